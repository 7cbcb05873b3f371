// Command kubelet-standin is the small unit beside the agent in the
// systemd node tests: it serves kubelet's /healthz, and answers 500 while
// the file --fail-file exists, so a test can make "kubelet" fail in a way
// a restart does or does not fix.
package main

import (
	"flag"
	"log"
	"net/http"
	"os"
)

func main() {
	addr := flag.String("listen", "127.0.0.1:10248", "healthz address")
	failFile := flag.String("fail-file", "/etc/kubelet-standin/fail", "while this file exists, /healthz answers 500")
	flag.Parse()
	http.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if _, err := os.Stat(*failFile); err == nil {
			http.Error(w, "failing on purpose ("+*failFile+")", http.StatusInternalServerError)
			return
		}
		_, _ = w.Write([]byte("ok"))
	})
	log.Printf("serving /healthz on %s", *addr)
	log.Fatal(http.ListenAndServe(*addr, nil))
}
