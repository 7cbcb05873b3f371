package devcluster

// DefaultParts are the parts `dovetail dev` runs after the control plane.
//
// Hook points, in start order, for parts that join as they are delivered:
//
//  1. EC2 simulator (cloud/ec2sim, in process): registers simulated
//     instances as kwok Nodes; sets Cluster.EC2Endpoint/EC2Region.
//  2. Coordinators (cmd/dovetail-coordinator, three subprocesses forming a
//     Raft group on loopback, EC2 endpoint = the simulator).
//  3. Agents (daemon/agent in process, one per running simulated instance,
//     found by polling Sim.Instances): the node name, the instance's IMDS
//     (Sim.IMDSEndpoint), the coordinators' API and gossip addresses.
func DefaultParts() []Part {
	return []Part{&EC2Sim{}, &Coordinators{}, &Agents{}, &Prometheus{}}
}
