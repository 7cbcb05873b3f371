package ami

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// component is the AWSTOE component document, as far as this one uses it.
// Decoding is strict, so a misspelt key fails.
type component struct {
	Name          string                         `json:"name"`
	Description   string                         `json:"description"`
	SchemaVersion any                            `json:"schemaVersion"` // 1.0, as AWS writes it unquoted
	Parameters    []map[string]componentParamDef `json:"parameters"`
	Phases        []struct {
		Name  string `json:"name"`
		Steps []struct {
			Name           string          `json:"name"`
			Action         string          `json:"action"`
			TimeoutSeconds int             `json:"timeoutSeconds,omitempty"`
			OnFailure      string          `json:"onFailure,omitempty"`
			MaxAttempts    int             `json:"maxAttempts,omitempty"`
			Inputs         componentInputs `json:"inputs"`
			If             *json0          `json:"if,omitempty"`
			Loop           *json0          `json:"loop,omitempty"`
			Outputs        *json0          `json:"outputs,omitempty"`
		} `json:"steps"`
	} `json:"phases"`
}

// json0 accepts any value for keys this test does not interpret.
type json0 = map[string]any

type componentParamDef struct {
	Type        string  `json:"type"`
	Default     *string `json:"default,omitempty"`
	Description string  `json:"description"`
}

// componentInputs is either a list of S3Download-style objects or an
// ExecuteBash object with commands.
type componentInputs struct {
	Commands []string
	List     []map[string]string
}

func (in *componentInputs) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '[' {
		return yaml.UnmarshalStrict(b, &in.List)
	}
	var obj struct {
		Commands []string `json:"commands"`
	}
	if err := yaml.UnmarshalStrict(b, &obj); err != nil {
		return err
	}
	in.Commands = obj.Commands
	return nil
}

func loadComponent(t *testing.T) *component {
	t.Helper()
	b, err := os.ReadFile("imagebuilder/dovetail-agent-component.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var c component
	if err := yaml.UnmarshalStrict(b, &c); err != nil {
		t.Fatalf("component document: %v", err)
	}
	return &c
}

var (
	stepName  = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9]*$`)
	reference = regexp.MustCompile(`\{\{\s*([^}]*?)\s*\}\}`)
	chained   = regexp.MustCompile(`^(build|validate|test)\.([A-Za-z0-9]+)\.(inputs\[\d+\]\.[a-z]+|outputs\.[a-z]+)$`)
)

func TestImageBuilderComponent(t *testing.T) {
	c := loadComponent(t)
	if v := fmt.Sprint(c.SchemaVersion); c.Name == "" || c.Description == "" || (v != "1" && v != "1.0") {
		t.Errorf("name %q, description %q, schemaVersion %q: all required, schemaVersion 1.0", c.Name, c.Description, c.SchemaVersion)
	}
	params := map[string]componentParamDef{}
	for _, p := range c.Parameters {
		for name, def := range p {
			if def.Type != "string" || def.Description == "" {
				t.Errorf("parameter %s: type %q, description %q", name, def.Type, def.Description)
			}
			params[name] = def
		}
	}
	if _, ok := params["RpmS3Uri"]; !ok {
		t.Error("no RpmS3Uri parameter")
	}

	actions := map[string]bool{"ExecuteBash": true, "S3Download": true, "WebDownload": true, "Reboot": true, "UpdateOS": true, "CreateFile": true, "SetFileOwner": true, "SetFilePermissions": true}
	phases := map[string]map[string]bool{}
	seen := map[string]bool{}
	for _, ph := range c.Phases {
		switch ph.Name {
		case "build", "validate", "test":
		default:
			t.Errorf("phase %q: Image Builder runs build, validate and test", ph.Name)
		}
		if seen[ph.Name] {
			t.Errorf("phase %q twice", ph.Name)
		}
		seen[ph.Name] = true
		steps := map[string]bool{}
		phases[ph.Name] = steps
		for _, st := range ph.Steps {
			if !stepName.MatchString(st.Name) || steps[st.Name] {
				t.Errorf("%s: step name %q is not alphanumeric or not unique", ph.Name, st.Name)
			}
			steps[st.Name] = true
			if !actions[st.Action] {
				t.Errorf("%s.%s: unknown action %q", ph.Name, st.Name, st.Action)
			}
			switch st.OnFailure {
			case "", "Abort", "Continue", "Ignore":
			default:
				t.Errorf("%s.%s: onFailure %q", ph.Name, st.Name, st.OnFailure)
			}
			switch st.Action {
			case "ExecuteBash":
				if len(st.Inputs.Commands) == 0 {
					t.Errorf("%s.%s: ExecuteBash without commands", ph.Name, st.Name)
				}
			case "S3Download":
				for _, in := range st.Inputs.List {
					if in["source"] == "" || in["destination"] == "" {
						t.Errorf("%s.%s: S3Download needs source and destination: %v", ph.Name, st.Name, in)
					}
				}
			}
		}
	}
	for _, want := range []string{"build", "validate", "test"} {
		if !seen[want] {
			t.Errorf("no %s phase", want)
		}
	}

	// Every {{ ... }} names a parameter or an earlier step's input/output,
	// and every ExecuteBash step is valid bash once they are substituted.
	for _, ph := range c.Phases {
		for _, st := range ph.Steps {
			var texts []string
			texts = append(texts, st.Inputs.Commands...)
			for _, in := range st.Inputs.List {
				for _, v := range in {
					texts = append(texts, v)
				}
			}
			for _, text := range texts {
				for _, m := range reference.FindAllStringSubmatch(text, -1) {
					ref := m[1]
					if _, ok := params[ref]; ok {
						continue
					}
					cm := chained.FindStringSubmatch(ref)
					if cm == nil || !phases[cm[1]][cm[2]] {
						t.Errorf("%s.%s: {{ %s }} is neither a parameter nor a step's input or output", ph.Name, st.Name, ref)
					}
				}
			}
			if st.Action != "ExecuteBash" {
				continue
			}
			script := reference.ReplaceAllString(strings.Join(st.Inputs.Commands, "\n"), "PLACEHOLDER")
			cmd := exec.Command("bash", "-n")
			cmd.Stdin = strings.NewReader(script)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("%s.%s: bash -n: %v\n%s\n%s", ph.Name, st.Name, err, out, script)
			}
		}
	}
}

// TestImageBuilderMatchesPacker: both recipes install the same way: the
// component's build commands do what scripts/install-agent.sh does.
func TestImageBuilderMatchesPacker(t *testing.T) {
	c := loadComponent(t)
	var all strings.Builder
	for _, ph := range c.Phases {
		for _, st := range ph.Steps {
			for _, cmd := range st.Inputs.Commands {
				all.WriteString(cmd + "\n")
			}
		}
	}
	for _, want := range []string{
		"rpm -K --nosignature",
		`dnf install -y "$rpm_file"`,
		"systemctl enable dovetail-agent.service",
		"systemctl is-enabled --quiet dovetail-agent.service",
		"systemd-analyze verify /usr/lib/systemd/system/dovetail-agent.service",
		"/usr/bin/dovetail-agent --version",
		"rm -rf /var/lib/dovetail-agent",
	} {
		if !strings.Contains(all.String(), want) {
			t.Errorf("the component never runs %q (scripts/install-agent.sh does)", want)
		}
	}
}
