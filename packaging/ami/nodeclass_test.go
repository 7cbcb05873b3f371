package ami

import (
	"bufio"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/zclconf/go-cty/cty"
	"sigs.k8s.io/yaml"

	awsv1 "github.com/dovetail-dev/dovetail/api/aws/v1"
)

func loadNodeClass(t *testing.T) *awsv1.EC2NodeClass {
	t.Helper()
	b, err := os.ReadFile("ec2nodeclass.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var nc awsv1.EC2NodeClass
	if err := yaml.UnmarshalStrict(b, &nc); err != nil {
		t.Fatalf("ec2nodeclass.yaml does not decode strictly into EC2NodeClass: %v", err)
	}
	return &nc
}

// TestNodeClassSelectsBakedImage: every amiSelectorTerm of the example must
// match the tags the Packer template puts on the image, for both
// architectures, or the EC2NodeClass would resolve no AMI.
func TestNodeClassSelectsBakedImage(t *testing.T) {
	nc := loadNodeClass(t)
	if nc.APIVersion != "karpenter.k8s.aws/v1" || nc.Kind != "EC2NodeClass" {
		t.Fatalf("apiVersion/kind = %s/%s", nc.APIVersion, nc.Kind)
	}
	if nc.Spec.AMIFamily == nil || *nc.Spec.AMIFamily != "AL2023" {
		t.Errorf("amiFamily = %v, want AL2023 (the base image is EKS AL2023, bootstrapped by nodeadm)", nc.Spec.AMIFamily)
	}
	if len(nc.Spec.AMISelectorTerms) == 0 {
		t.Fatal("no amiSelectorTerms")
	}
	tpl := parseTemplate(t)
	for _, arch := range []string{"x86_64", "arm64"} {
		ctx := tpl.evalContext(t, map[string]cty.Value{"arch": cty.StringVal(arch)})
		tags := strMap(t, evalBlocks(t, tpl.body, ctx, "source")["source.amazon-ebs.al2023.tags"])
		for i, term := range nc.Spec.AMISelectorTerms {
			if term.Alias != "" || term.ID != "" || term.SSMParameter != "" {
				t.Errorf("term %d selects by alias/id/ssm, not by the baked image's tags", i)
			}
			if len(term.Tags) == 0 {
				t.Errorf("term %d has no tags", i)
			}
			for k, v := range term.Tags {
				if got, ok := tags[k]; !ok || (v != "*" && got != v) {
					t.Errorf("%s image: term %d wants tag %s=%s, the template sets %q", arch, i, k, v, got)
				}
			}
			if term.Owner != "" && term.Owner != "self" {
				t.Errorf("term %d owner %q: a baked image is owned by the baking account (self)", i, term.Owner)
			}
		}
	}
	if nc.Spec.MetadataOptions == nil || nc.Spec.MetadataOptions.HTTPTokens == nil || *nc.Spec.MetadataOptions.HTTPTokens != "required" {
		t.Error("metadataOptions.httpTokens must be required (the agent speaks IMDSv2)")
	}
}

// TestNodeClassUserData: the user data is a MIME multipart whose
// cloud-config writes agent.env with settings the agent knows.
func TestNodeClassUserData(t *testing.T) {
	nc := loadNodeClass(t)
	if nc.Spec.UserData == nil {
		t.Fatal("no userData")
	}
	msg, err := mail.ReadMessage(bufio.NewReader(strings.NewReader(*nc.Spec.UserData)))
	if err != nil {
		t.Fatalf("userData is not a MIME message: %v", err)
	}
	mediaType, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mediaType != "multipart/mixed" {
		t.Fatalf("userData Content-Type %q: %v", msg.Header.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	var cloudConfig []byte
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("userData part: %v", err)
		}
		ct, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		b, err := io.ReadAll(p)
		if err != nil {
			t.Fatal(err)
		}
		if ct == "text/cloud-config" {
			cloudConfig = b
		}
	}
	if !strings.HasPrefix(string(cloudConfig), "#cloud-config\n") {
		t.Fatalf("no text/cloud-config part starting with #cloud-config:\n%s", cloudConfig)
	}
	var cc struct {
		WriteFiles []struct {
			Path        string `json:"path"`
			Permissions string `json:"permissions"`
			Owner       string `json:"owner"`
			Content     string `json:"content"`
		} `json:"write_files"`
	}
	if err := yaml.UnmarshalStrict(cloudConfig, &cc); err != nil {
		t.Fatalf("cloud-config: %v", err)
	}
	if len(cc.WriteFiles) != 1 || cc.WriteFiles[0].Path != "/etc/dovetail/agent.env" {
		t.Fatalf("write_files = %+v, want /etc/dovetail/agent.env", cc.WriteFiles)
	}
	if cc.WriteFiles[0].Permissions != "0640" {
		t.Errorf("agent.env permissions %q, want 0640 as the package installs it", cc.WriteFiles[0].Permissions)
	}

	// Every setting is one the package's agent.env documents (that file's
	// own test ties it to the agent's flags).
	known, err := os.ReadFile(filepath.Join("..", "nfpm", "agent.env"))
	if err != nil {
		t.Fatal(err)
	}
	setting := regexp.MustCompile(`^(DOVETAIL_AGENT_[A-Z0-9_]+)=(.*)$`)
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(cc.WriteFiles[0].Content), "\n") {
		m := setting.FindStringSubmatch(line)
		if m == nil {
			t.Errorf("agent.env line %q is not NAME=value", line)
			continue
		}
		n++
		if !regexp.MustCompile(`(?m)^#?` + m[1] + `=`).Match(known) {
			t.Errorf("%s is not a setting packaging/nfpm/agent.env documents", m[1])
		}
	}
	if n == 0 {
		t.Error("user data writes no agent settings")
	}
}
