// Package systemdtest proves the agent where it lives: a Debian node with
// systemd as PID 1 (a Docker container of hack/build-node-image.sh's
// image), the agent installed from the project's own .deb, containerd and
// journald beside it, talking to the local control plane and the EC2
// simulator's IMDS. The tests are in this package's _test files; they skip
// with a message where Docker or mmdebstrap is missing, and fail instead
// when CI=true.
package systemdtest
