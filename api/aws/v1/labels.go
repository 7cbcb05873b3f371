package v1

import karpv1 "github.com/dovetail-dev/dovetail/api/v1"

// The instance labels live in api/v1 with the other well-known labels; they
// are repeated here under the names Karpenter's AWS provider uses.
const (
	LabelInstanceHypervisor              = karpv1.LabelInstanceHypervisor
	LabelInstanceEncryptionInTransit     = karpv1.LabelInstanceEncryptionInTransit
	LabelInstanceCategory                = karpv1.LabelInstanceCategory
	LabelInstanceFamily                  = karpv1.LabelInstanceFamily
	LabelInstanceGeneration              = karpv1.LabelInstanceGeneration
	LabelInstanceLocalNVME               = karpv1.LabelInstanceLocalNVME
	LabelInstanceSize                    = karpv1.LabelInstanceSize
	LabelInstanceCPU                     = karpv1.LabelInstanceCPU
	LabelInstanceCPUManufacturer         = karpv1.LabelInstanceCPUManufacturer
	LabelInstanceCPUSustainedClockMhz    = karpv1.LabelInstanceCPUSustainedClockMhz
	LabelInstanceMemory                  = karpv1.LabelInstanceMemory
	LabelInstanceEBSBandwidth            = karpv1.LabelInstanceEBSBandwidth
	LabelInstanceNetworkBandwidth        = karpv1.LabelInstanceNetworkBandwidth
	LabelInstanceGPUName                 = karpv1.LabelInstanceGPUName
	LabelInstanceGPUManufacturer         = karpv1.LabelInstanceGPUManufacturer
	LabelInstanceGPUCount                = karpv1.LabelInstanceGPUCount
	LabelInstanceGPUMemory               = karpv1.LabelInstanceGPUMemory
	LabelInstanceAcceleratorName         = karpv1.LabelInstanceAcceleratorName
	LabelInstanceAcceleratorManufacturer = karpv1.LabelInstanceAcceleratorManufacturer
	LabelInstanceAcceleratorCount        = karpv1.LabelInstanceAcceleratorCount
	LabelTopologyZoneID                  = karpv1.LabelTopologyZoneID
	// LabelNodeClass names the EC2NodeClass a node was launched from.
	LabelNodeClass = karpv1.LabelNodeClass
)
