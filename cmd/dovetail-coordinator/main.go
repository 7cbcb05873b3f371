// Command dovetail-coordinator is the replicated control loop: provisioning,
// disruption and launches, replicated with Raft.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/dovetail-dev/dovetail/version"
)

func main() {
	fs := flag.NewFlagSet("dovetail-coordinator", flag.ContinueOnError)
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: dovetail-coordinator [flags]\n\nThe Dovetail coordinator.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		if err == flag.ErrHelp {
			os.Exit(0)
		}
		os.Exit(2)
	}
	if *showVersion {
		fmt.Println("dovetail-coordinator", version.String())
		return
	}
}
