// Command dovetail-agent is the node daemon: IMDS interruption watch, health
// checks, self-repair, drain and gossip. It runs under systemd on every node.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/dovetail-dev/dovetail/version"
)

func main() {
	fs := flag.NewFlagSet("dovetail-agent", flag.ContinueOnError)
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: dovetail-agent [flags]\n\nThe Dovetail node agent.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		if err == flag.ErrHelp {
			os.Exit(0)
		}
		os.Exit(2)
	}
	if *showVersion {
		fmt.Println("dovetail-agent", version.String())
		return
	}
}
