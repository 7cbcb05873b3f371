package devcluster

import (
	"context"
	"fmt"

	"github.com/dovetail-dev/dovetail/cloud/ec2sim"
)

// EC2Sim runs Dovetail's EC2 simulator in process. Instances it launches
// register as kwok Nodes in the dev cluster; its URL is the EC2 and SSM
// endpoint for the coordinators.
type EC2Sim struct {
	sim *ec2sim.Sim
}

// Name implements Part.
func (*EC2Sim) Name() string { return "EC2 simulator" }

// Start implements Part.
func (e *EC2Sim) Start(ctx context.Context, c *Cluster) error {
	e.sim = ec2sim.New(ec2sim.Config{
		RESTConfig: c.RESTConfig,
		Logger:     c.Log.With("part", "ec2sim"),
	})
	if err := e.sim.Start(ctx); err != nil {
		return fmt.Errorf("ec2sim: %w", err)
	}
	c.EC2Endpoint = e.sim.URL()
	c.EC2Region = e.sim.Region()
	c.Sim = e.sim
	return nil
}

// Stop implements Part.
func (e *EC2Sim) Stop() {
	if e.sim != nil {
		e.sim.Close()
	}
}
