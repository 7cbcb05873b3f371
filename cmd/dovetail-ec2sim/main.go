// Command dovetail-ec2sim runs Dovetail's EC2 simulator as a standalone
// server: the EC2 Query API and SSM's public AMI parameters on one URL,
// a control API under /sim/, Prometheus metrics on /metrics, an IMDSv2
// endpoint per instance and, given a kubeconfig, kwok Nodes for running
// instances. Point aws-sdk-go-v2 (or the AWS CLI, --endpoint-url) at the
// URL it prints.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/dovetail-dev/dovetail/catalog"
	"github.com/dovetail-dev/dovetail/cloud/ec2sim"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "dovetail-ec2sim:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		listen        = flag.String("listen", "127.0.0.1:4566", "listen address (host:port; port 0 picks a free one)")
		region        = flag.String("region", "us-east-1", "simulated region")
		zones         = flag.String("zones", "", "comma-separated zones (default <region>a,b,c)")
		bootDelay     = flag.Duration("boot-delay", 5*time.Second, "time an instance stays pending")
		termDelay     = flag.Duration("terminate-delay", 5*time.Second, "time an instance stays shutting-down")
		capacity      = flag.Int("capacity", -1, "instances each pool (type × zone × capacity type) can launch; -1 unlimited")
		maxSpot       = flag.Int("max-spot", 0, "maximum live spot instances (0 unlimited)")
		spotInterval  = flag.Duration("spot-price-interval", 0, "move spot prices of used pools this often (0 = never)")
		spotVol       = flag.Float64("spot-price-volatility", 0.1, "largest relative spot price move per interval")
		kubeconfig    = flag.String("kubeconfig", "", "register running instances as kwok Nodes in this cluster")
		clusterName   = flag.String("cluster-name", "dovetail-local", "cluster name for discovery tags")
		k8sVersions   = flag.String("kubernetes-versions", "", "comma-separated Kubernetes versions with AMIs (default 1.34-1.37)")
		instanceTypes = flag.String("instance-types", "", "instance catalogue file (shared instance-types.json format); default the embedded one")
		urlFile       = flag.String("url-file", "", "also write the URL to this file (for scripts)")
		verbose       = flag.Bool("v", false, "debug logging")
	)
	flag.Parse()

	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	cfg := ec2sim.Config{
		Region: *region, BootDelay: *bootDelay, TerminateDelay: *termDelay,
		DefaultPoolCapacity: *capacity, MaxSpotInstances: *maxSpot, ClusterName: *clusterName,
		Logger: log, Addr: *listen, SpotPriceInterval: *spotInterval, SpotPriceVolatility: *spotVol,
		Seed: uint64(time.Now().UnixNano()),
	}
	if *zones != "" {
		cfg.Zones = splitList(*zones)
	}
	if *k8sVersions != "" {
		cfg.KubernetesVersions = splitList(*k8sVersions)
	}
	if *instanceTypes != "" {
		cat, err := catalog.LoadFile(*instanceTypes)
		if err != nil {
			return err
		}
		cfg.Catalog = cat
	}
	if *kubeconfig != "" {
		rc, err := restConfig(*kubeconfig)
		if err != nil {
			return err
		}
		cfg.RESTConfig = rc
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sim := ec2sim.New(cfg)
	if err := sim.Start(ctx); err != nil {
		return err
	}
	defer sim.Close()
	fmt.Println(sim.URL())
	if *urlFile != "" {
		if err := os.WriteFile(*urlFile, []byte(sim.URL()+"\n"), 0o644); err != nil {
			return fmt.Errorf("write url file: %w", err)
		}
	}
	log.Info("ready", "url", sim.URL(), "subnets", sim.SubnetIDs(), "securityGroup", sim.SecurityGroupID())
	<-ctx.Done()
	log.Info("shutting down")
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func restConfig(path string) (*rest.Config, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	return rc, nil
}
