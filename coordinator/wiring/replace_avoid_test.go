package wiring

import (
	"testing"

	"github.com/dovetail-dev/dovetail/cloud"
)

func TestWithoutOfferingsDropsOnlyTheAvoidedPool(t *testing.T) {
	opts := []cloud.LaunchOption{
		{InstanceType: "m5.large", Zone: "us-east-1a", CapacityType: "spot"},
		{InstanceType: "m5.large", Zone: "us-east-1b", CapacityType: "spot"},
		{InstanceType: "m5.large", Zone: "us-east-1a", CapacityType: "on-demand"},
		{InstanceType: "c5.large", Zone: "us-east-1a", CapacityType: "spot"},
	}
	got := withoutOfferings(opts, []cloud.UnavailableOffering{{InstanceType: "m5.large", Zone: "us-east-1a", CapacityType: "spot"}})
	if len(got) != 3 {
		t.Fatalf("got %+v, want every option but m5.large/us-east-1a/spot", got)
	}
	for _, o := range got {
		if o.InstanceType == "m5.large" && o.Zone == "us-east-1a" && o.CapacityType == "spot" {
			t.Fatalf("avoided offering kept: %+v", got)
		}
	}
	if len(opts) != 4 {
		t.Fatal("input modified")
	}
}
