package e2e

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awsec2 "github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	karpv1 "github.com/dovetail-dev/dovetail/api/v1"
	"github.com/dovetail-dev/dovetail/cloud/ec2sim"
	"github.com/dovetail-dev/dovetail/daemon/imds"
	"github.com/dovetail-dev/dovetail/report"
	"github.com/dovetail-dev/dovetail/tlsid"
)

func attackPool(t *testing.T) *karpv1.NodePool {
	return decode[karpv1.NodePool](t, `
apiVersion: karpenter.sh/v1
kind: NodePool
metadata: {name: attack}
spec:
  template:
    spec:
      nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: e2e}
      requirements:
        - {key: karpenter.sh/capacity-type, operator: In, values: [spot]}
        - {key: kubernetes.io/arch, operator: In, values: [amd64]}
        - {key: node.kubernetes.io/instance-type, operator: In, values: [m5.large]}
`)
}

// launchForeign starts an instance in the simulator's account that no
// NodeClaim of the cluster owns (someone else's machine in the same VPC).
func (e *env) launchForeign(token string) string {
	e.t.Helper()
	c := awsec2.NewFromConfig(aws.Config{Region: e.sim.Region(), Credentials: credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", "")},
		func(o *awsec2.Options) { o.BaseEndpoint = aws.String(e.sim.URL()) })
	ami, ok := e.sim.SSMParameter("/aws/service/eks/optimized-ami/1.37/amazon-linux-2023/x86_64/standard/recommended/image_id")
	if !ok {
		e.t.Fatal("no AL2023 AMI in the simulator")
	}
	lt, err := c.CreateLaunchTemplate(e.ctx, &awsec2.CreateLaunchTemplateInput{LaunchTemplateName: aws.String("lt-" + token),
		LaunchTemplateData: &ec2types.RequestLaunchTemplateData{ImageId: aws.String(ami), SecurityGroupIds: []string{e.sim.SecurityGroupID()}}})
	if err != nil {
		e.t.Fatal(err)
	}
	out, err := c.CreateFleet(e.ctx, &awsec2.CreateFleetInput{Type: ec2types.FleetTypeInstant, ClientToken: aws.String(token),
		LaunchTemplateConfigs: []ec2types.FleetLaunchTemplateConfigRequest{{
			LaunchTemplateSpecification: &ec2types.FleetLaunchTemplateSpecificationRequest{LaunchTemplateId: lt.LaunchTemplate.LaunchTemplateId, Version: aws.String("$Latest")},
			Overrides:                   []ec2types.FleetLaunchTemplateOverridesRequest{{InstanceType: "m5.large", SubnetId: aws.String(e.sim.SubnetIDs()[0])}},
		}},
		TargetCapacitySpecification: &ec2types.TargetCapacitySpecificationRequest{TotalTargetCapacity: aws.Int32(1), DefaultTargetCapacityType: ec2types.DefaultTargetCapacityTypeOnDemand}})
	if err != nil || len(out.Instances) != 1 {
		e.t.Fatalf("launch foreign instance: %v %+v", err, out)
	}
	id := out.Instances[0].InstanceIds[0]
	e.eventually("foreign instance running", 20*time.Second, func() (bool, string) {
		in, _ := e.sim.Instance(id)
		return in.State == "running" && in.IMDSEndpoint != "", "state " + in.State
	})
	return id
}

// evidence reads an instance's identity document and rsa2048 signature from
// its IMDS, as anyone on that instance could.
func (e *env) evidence(instanceID string) (string, string) {
	e.t.Helper()
	w, err := imds.New(imds.Config{Endpoint: e.sim.IMDSEndpoint(instanceID)})
	if err != nil {
		e.t.Fatal(err)
	}
	doc, sig, err := w.IdentityEvidence(e.ctx, "rsa2048")
	if err != nil {
		e.t.Fatal(err)
	}
	return string(doc), strings.TrimSpace(string(sig))
}

// refusedTotal sums dovetail_report_refused_total{reason} over the replicas.
func (e *env) refusedTotal(reason string) float64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	total := 0.0
	for _, r := range e.reps {
		mfs, err := r.Registry().Gather()
		if err != nil {
			continue
		}
		for _, mf := range mfs {
			if mf.GetName() != "dovetail_report_refused_total" {
				continue
			}
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "reason" && l.GetValue() == reason {
						total += m.GetCounter().GetValue()
					}
				}
			}
		}
	}
	return total
}

type attacker struct {
	e    *env
	urls []string
	http *http.Client
}

// post sends body to path on every replica in turn (followers forward to
// the leader, which judges), signed by sign when set, and returns the codes.
func (a attacker) post(path string, body []byte, sign func(*http.Request, []byte)) []int {
	var codes []int
	for _, u := range a.urls {
		// A 503 is "no leader right now" (an election on a loaded machine),
		// which an agent retries too: ask again until a leader judges it.
		code := http.StatusServiceUnavailable
		for deadline := time.Now().Add(15 * time.Second); code == http.StatusServiceUnavailable && time.Now().Before(deadline); {
			req, _ := http.NewRequestWithContext(a.e.ctx, http.MethodPost, u+path, bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			if sign != nil {
				sign(req, body)
			}
			resp, err := a.http.Do(req)
			if err != nil {
				a.e.t.Fatalf("post %s: %v", u+path, err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if code = resp.StatusCode; code == http.StatusServiceUnavailable {
				time.Sleep(100 * time.Millisecond)
			}
		}
		codes = append(codes, code)
	}
	return codes
}

func signWith(key ed25519.PrivateKey, instance string) func(*http.Request, []byte) {
	return func(r *http.Request, b []byte) { report.Sign(r, key, instance, time.Now().UnixNano(), b) }
}

// TestReportAttacks attacks the report intake of three coordinator replicas
// (Raft, API, the EC2 simulator's IMDS signer as the trust anchor, the
// control plane launching real NodeClaims) the way a process inside the
// cluster would. Two attested agents run on two launched nodes. Every
// attack is refused on every replica, nothing about it reaches the
// replicated state, and each refusal is counted under its reason.
func TestReportAttacks(t *testing.T) {
	e := newEnv(t, ec2sim.Config{})
	const ans = "attack"
	e.apply(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ans}})
	e.apply(nodeClass(t, "e2e"), attackPool(t))
	e.apply(deployment(ans, "two", "1200m", "1Gi"))
	e.leader()
	e.scale(ans, "two", 2)
	var nodes []string
	var insts []string
	e.eventually("two launched nodes", 2*time.Minute, func() (bool, string) {
		f := e.fleet(ans)
		nodes, insts = nil, nil
		for id, in := range f.live {
			if n := f.nodeByProv[in.ProviderID]; n != "" {
				nodes, insts = append(nodes, n), append(insts, id)
			}
		}
		return len(nodes) >= 2, fmt.Sprintf("%d nodes", len(nodes))
	})
	nodeA, instA, nodeB, instB := nodes[0], insts[0], nodes[1], insts[1]
	// Agents on both nodes attest (trust on first use) and report.
	dirA := e.startAgentDir(nodeA, instA)
	e.startAgent(nodeB, instB)
	e.eventually("both agents attested", 30*time.Second, func() (bool, string) {
		st := e.anyReplica().Node().State()
		return st.Attestations[instA] != nil && st.Attestations[instB] != nil, fmt.Sprintf("%d attestations", len(st.Attestations))
	})
	var urls []string
	for _, p := range e.peers {
		urls = append(urls, "https://"+p.HTTPAddr)
	}
	// The attacker reaches the API over TLS as any pod can (the server
	// certificate proves nothing about the caller) and holds no token.
	atk := attacker{e: e, urls: urls, http: &http.Client{Timeout: 15 * time.Second, Transport: e.pki.transport("")}}
	before := e.anyReplica().Node().State()
	interrupt := func(id, node string) []byte {
		b, _ := json.Marshal(report.Report{ID: id, Kind: report.KindInterruption, NodeName: node, Action: "terminate"})
		return b
	}
	_, thief, _ := ed25519.GenerateKey(rand.Reader)
	attestBody := func(doc, sig string, pub ed25519.PublicKey, node string) []byte {
		b, _ := json.Marshal(report.Attestation{Format: "rsa2048", Document: doc, Signature: sig,
			PublicKey: base64.StdEncoding.EncodeToString(pub), NodeName: node})
		return b
	}
	// Node A's own key, as a compromised node A holds it.
	keyA := readNodeKey(t, filepath.Join(dirA, "node-key.pem"))
	docB, sigB := e.evidence(instB)
	foreign := e.launchForeign("attack-foreign")
	docF, sigF := e.evidence(foreign)

	attacks := []struct {
		name, reason string
		code         int
		path         string
		body         []byte
		sign         func(*http.Request, []byte)
	}{
		{"forged report without credentials", "no_credentials", 401, report.Path, interrupt("atk-1", nodeB), nil},
		{"report with a bad signature", "bad_signature", 401, report.Path, interrupt("atk-2", nodeB), signWith(thief, instB)},
		{"replayed identity document with another key", "replayed_document", 403, report.AttestPath,
			attestBody(docB, sigB, thief.Public().(ed25519.PublicKey), nodeB), signWith(thief, instB)},
		{"report for another node (node A's key)", "other_node", 403, report.Path, interrupt("atk-4", nodeB), signWith(keyA, instA)},
		{"instance outside the cluster", "not_owned", 403, report.AttestPath,
			attestBody(docF, sigF, thief.Public().(ed25519.PublicKey), "ip-foreign"), signWith(thief, foreign)},
	}
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			defer e.use(t)()
			counted := e.refusedTotal(a.reason)
			for i, code := range atk.post(a.path, a.body, a.sign) {
				if code != a.code {
					t.Errorf("replica %d answered %d, want %d", i, code, a.code)
				}
			}
			if got := e.refusedTotal(a.reason) - counted; got != float64(len(urls)) {
				t.Errorf("dovetail_report_refused_total{reason=%q} rose by %v, want %d", a.reason, got, len(urls))
			}
		})
	}
	// A node holding the gossip key advertises itself as a coordinator: its
	// certificate is of the cluster's CA (as any other the CA signed) but
	// lacks the coordinator identity. The agents' TLS configuration refuses
	// the handshake, so no report reaches it.
	t.Run("impostor coordinator", func(t *testing.T) {
		defer e.use(t)()
		kp, err := e.pki.ca.Issue(tlsid.Leaf{CommonName: "impostor", IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Server: true, Client: true}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		cert, err := tls.X509KeyPair(kp.CertPEM, kp.KeyPEM)
		if err != nil {
			t.Fatal(err)
		}
		reached := make(chan struct{}, 1)
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
			select {
			case reached <- struct{}{}:
			default:
			}
		}))
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
		srv.Config.ErrorLog = stdlog.New(io.Discard, "", 0)
		srv.StartTLS()
		defer srv.Close()
		c := &http.Client{Timeout: 5 * time.Second, Transport: e.pki.transport("")}
		resp, err := c.Post(srv.URL+report.Path, "application/json", bytes.NewReader(interrupt("atk-5", nodeB)))
		if err == nil {
			resp.Body.Close()
			t.Fatalf("the agents' TLS accepted an impostor coordinator: %s", resp.Status)
		}
		if !strings.Contains(err.Error(), "not a coordinator's") {
			t.Errorf("refused for another reason than the identity: %v", err)
		}
		select {
		case <-reached:
			t.Error("the impostor received a report")
		default:
		}
	})
	// Nothing the attackers sent reached the replicated state of any replica.
	for id, r := range e.reps {
		st := r.Node().State()
		for _, rid := range []string{"atk-1", "atk-2", "atk-4"} {
			if _, ok := st.ReportIDs[rid]; ok {
				t.Errorf("replica %s committed attack report %s", id, rid)
			}
		}
		if n := st.Nodes[nodeB]; n != nil && n.Interruption != nil {
			t.Errorf("replica %s holds an interruption for %s", id, nodeB)
		}
		if a := st.Attestations[instB]; a == nil || !bytes.Equal(a.PublicKey, before.Attestations[instB].PublicKey) {
			t.Errorf("replica %s: binding of %s changed", id, instB)
		}
		if st.Attestations[foreign] != nil || st.Bindings[foreign] != nil {
			t.Errorf("replica %s knows the foreign instance", id)
		}
	}
	// The real agents still speak for themselves: a spot notice on B is
	// reported (signed, no new attestation) and committed.
	attB := before.Attestations[instB].Since
	if _, err := e.sim.InterruptSpot(instB); err != nil {
		t.Fatalf("interrupt %s: %v", instB, err)
	} else {
		e.eventually("node B's own interruption report", 30*time.Second, func() (bool, string) {
			st := e.anyReplica().Node().State()
			n := st.Nodes[nodeB]
			return n != nil && n.Interruption != nil, "none yet"
		})
		if a := e.anyReplica().Node().State().Attestations[instB]; a == nil || !a.Since.Equal(attB) {
			t.Error("the spot notice path attested again")
		}
	}
}

func readNodeKey(t *testing.T, path string) ed25519.PrivateKey {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || len(blk.Bytes) != ed25519.SeedSize {
		t.Fatalf("node key %s unreadable", path)
	}
	return ed25519.NewKeyFromSeed(blk.Bytes)
}
