package devcluster

// DefaultParts are the parts `dovetail dev` runs after the control plane.
//
// Hook points, in start order, for parts that join as they are delivered:
//
//  1. EC2 simulator (cloud/ec2sim, in process): registers simulated
//     instances as kwok Nodes; sets Cluster.EC2Endpoint/EC2Region.
//  2. Coordinators (cmd/dovetail-coordinator, three subprocesses forming a
//     Raft group on loopback, EC2 endpoint = the simulator).
//  3. Agents (cmd/dovetail-agent, one per simulated node): need the node
//     name, the node's IMDS endpoint (Sim.IMDSEndpoint) and the gossip seeds.
func DefaultParts() []Part {
	return []Part{&EC2Sim{}, &Coordinators{}}
}
