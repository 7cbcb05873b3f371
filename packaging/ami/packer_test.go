package ami

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/tryfunc"
	"github.com/hashicorp/hcl/v2/ext/typeexpr"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"

	"github.com/dovetail-dev/dovetail/catalog"
)

const templatePath = "dovetail-al2023.pkr.hcl"

// The values a builder must pass (variables without a default).
var required = map[string]cty.Value{
	"rpm_path":         cty.StringVal("dist/dovetail-agent-1.2.3-1.x86_64.rpm"),
	"dovetail_version": cty.StringVal("1.2.3"),
}

// template is the parsed Packer file with its variables and locals decoded.
type template struct {
	body      *hclsyntax.Body
	variables map[string]*variable
	locals    map[string]hcl.Expression
}

type variable struct {
	typ         cty.Type
	def         cty.Value // cty.NilVal when required
	description string
	validations []validation
}

type validation struct {
	condition hcl.Expression
	message   string
}

func parseTemplate(t *testing.T) *template {
	t.Helper()
	f, diags := hclparse.NewParser().ParseHCLFile(templatePath)
	if diags.HasErrors() {
		t.Fatalf("parse %s: %s", templatePath, diags.Error())
	}
	body := f.Body.(*hclsyntax.Body)

	// Only Packer's top-level blocks, and no top-level attributes.
	_, diags = f.Body.Content(&hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{
		{Type: "packer"},
		{Type: "variable", LabelNames: []string{"name"}},
		{Type: "locals"},
		{Type: "source", LabelNames: []string{"type", "name"}},
		{Type: "build"},
	}})
	if diags.HasErrors() {
		t.Fatalf("%s: %s", templatePath, diags.Error())
	}

	tpl := &template{body: body, variables: map[string]*variable{}, locals: map[string]hcl.Expression{}}
	for _, b := range body.Blocks {
		switch b.Type {
		case "variable":
			name := b.Labels[0]
			if _, dup := tpl.variables[name]; dup {
				t.Errorf("variable %q declared twice", name)
			}
			tpl.variables[name] = decodeVariable(t, name, b.Body)
		case "locals":
			for name, a := range b.Body.Attributes {
				if _, dup := tpl.locals[name]; dup {
					t.Errorf("local %q declared twice", name)
				}
				tpl.locals[name] = a.Expr
			}
		}
	}
	return tpl
}

func decodeVariable(t *testing.T, name string, body *hclsyntax.Body) *variable {
	t.Helper()
	v := &variable{typ: cty.DynamicPseudoType}
	for an, a := range body.Attributes {
		switch an {
		case "type":
			ty, diags := typeexpr.TypeConstraint(a.Expr)
			if diags.HasErrors() {
				t.Errorf("variable %q: type: %s", name, diags.Error())
			}
			v.typ = ty
		case "default":
			val, diags := a.Expr.Value(nil)
			if diags.HasErrors() {
				t.Errorf("variable %q: default: %s", name, diags.Error())
			}
			v.def = val
		case "description":
			val, diags := a.Expr.Value(nil)
			if diags.HasErrors() || val.Type() != cty.String {
				t.Errorf("variable %q: description is not a string", name)
			} else {
				v.description = val.AsString()
			}
		case "sensitive", "nullable":
		default:
			t.Errorf("variable %q: unknown attribute %q", name, an)
		}
	}
	for _, b := range body.Blocks {
		if b.Type != "validation" {
			t.Errorf("variable %q: unknown block %q", name, b.Type)
			continue
		}
		var vd validation
		if a, ok := b.Body.Attributes["condition"]; ok {
			vd.condition = a.Expr
		}
		if a, ok := b.Body.Attributes["error_message"]; ok {
			if m, diags := a.Expr.Value(nil); !diags.HasErrors() && m.Type() == cty.String {
				vd.message = m.AsString()
			}
		}
		if vd.condition == nil || vd.message == "" {
			t.Errorf("variable %q: a validation needs condition and error_message", name)
		}
		v.validations = append(v.validations, vd)
	}
	if v.def != cty.NilVal {
		conv, err := convert.Convert(v.def, v.typ)
		if err != nil {
			t.Errorf("variable %q: default does not fit type %s: %v", name, typeexpr.TypeString(v.typ), err)
		} else {
			v.def = conv
		}
	}
	return v
}

// functions are the Packer functions the template uses, with timestamp()
// fixed so the evaluation is repeatable.
func functions() map[string]function.Function {
	fixed := function.New(&function.Spec{
		Type: function.StaticReturnType(cty.String),
		Impl: func([]cty.Value, cty.Type) (cty.Value, error) {
			return cty.StringVal("2026-11-27T09:30:00Z"), nil
		},
	})
	return map[string]function.Function{
		"timestamp":     fixed,
		"regex_replace": stdlib.RegexReplaceFunc,
		"regex":         stdlib.RegexFunc,
		"contains":      stdlib.ContainsFunc,
		"merge":         stdlib.MergeFunc,
		"can":           tryfunc.CanFunc,
		"try":           tryfunc.TryFunc,
	}
}

// evalContext resolves var.*, local.* and path.root for the given variable
// values (defaults plus required plus overrides), as packer build would.
func (tpl *template) evalContext(t *testing.T, overrides map[string]cty.Value) *hcl.EvalContext {
	t.Helper()
	vars := map[string]cty.Value{}
	for name, v := range tpl.variables {
		val, ok := overrides[name]
		if !ok {
			val, ok = required[name]
		}
		if !ok {
			val = v.def
		}
		if val == cty.NilVal {
			t.Fatalf("variable %q has no default and the test gives no value", name)
		}
		conv, err := convert.Convert(val, v.typ)
		if err != nil {
			t.Fatalf("variable %q: %v", name, err)
		}
		vars[name] = conv
	}
	ctx := &hcl.EvalContext{
		Variables: map[string]cty.Value{
			"var":  cty.ObjectVal(vars),
			"path": cty.ObjectVal(map[string]cty.Value{"root": cty.StringVal(".")}),
		},
		Functions: functions(),
	}
	// Locals may refer to each other: evaluate until all are known, as long
	// as each round makes progress.
	locals := map[string]cty.Value{}
	for len(locals) < len(tpl.locals) {
		progress := false
		var lastErr hcl.Diagnostics
		ctx.Variables["local"] = cty.ObjectVal(locals)
		for name, expr := range tpl.locals {
			if _, done := locals[name]; done {
				continue
			}
			val, diags := expr.Value(ctx)
			if diags.HasErrors() {
				lastErr = diags
				continue
			}
			locals[name] = val
			progress = true
		}
		if !progress {
			t.Fatalf("locals cannot be evaluated: %s", lastErr.Error())
		}
	}
	ctx.Variables["local"] = cty.ObjectVal(locals)
	return ctx
}

// evalBlocks evaluates every attribute of every block of the given type,
// recursively, and returns them as "block.label.nested.attr" → value. An
// attribute that cannot be evaluated (a typo in a reference, a wrong
// function) is a test failure: it is what `packer validate` would reject.
func evalBlocks(t *testing.T, body *hclsyntax.Body, ctx *hcl.EvalContext, blockType string) map[string]cty.Value {
	t.Helper()
	out := map[string]cty.Value{}
	var walk func(prefix string, b *hclsyntax.Body)
	walk = func(prefix string, b *hclsyntax.Body) {
		for name, a := range b.Attributes {
			val, diags := a.Expr.Value(ctx)
			if diags.HasErrors() {
				t.Errorf("%s.%s: %s", prefix, name, diags.Error())
				continue
			}
			out[prefix+"."+name] = val
		}
		counts := map[string]int{}
		for _, nb := range b.Blocks {
			base := prefix + "." + strings.Join(append([]string{nb.Type}, nb.Labels...), ".")
			// Repeated blocks (several provisioners) are told apart by index.
			walk(fmt.Sprintf("%s[%d]", base, counts[base]), nb.Body)
			counts[base]++
		}
	}
	for _, b := range body.Blocks {
		if b.Type == blockType {
			walk(strings.Join(append([]string{b.Type}, b.Labels...), "."), b.Body)
		}
	}
	return out
}

func str(t *testing.T, vals map[string]cty.Value, key string) string {
	t.Helper()
	v, ok := vals[key]
	if !ok {
		t.Fatalf("no %s; have %v", key, keys(vals))
	}
	if v.Type() != cty.String {
		t.Fatalf("%s is %s, not a string", key, v.Type().FriendlyName())
	}
	return v.AsString()
}

func strList(t *testing.T, v cty.Value) []string {
	t.Helper()
	if !v.CanIterateElements() {
		t.Fatalf("%#v is not a list", v)
	}
	var out []string
	for it := v.ElementIterator(); it.Next(); {
		_, e := it.Element()
		s, err := convert.Convert(e, cty.String)
		if err != nil {
			t.Fatalf("list element %#v: %v", e, err)
		}
		out = append(out, s.AsString())
	}
	return out
}

func strMap(t *testing.T, v cty.Value) map[string]string {
	t.Helper()
	out := map[string]string{}
	for it := v.ElementIterator(); it.Next(); {
		k, e := it.Element()
		out[k.AsString()] = e.AsString()
	}
	return out
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func TestTemplateDeclarations(t *testing.T) {
	tpl := parseTemplate(t)
	for name, v := range tpl.variables {
		if v.description == "" {
			t.Errorf("variable %q has no description (packer inspect shows it)", name)
		}
	}
	for name := range required {
		v, ok := tpl.variables[name]
		if !ok || v.def != cty.NilVal {
			t.Errorf("variable %q should be declared without a default: the builder must pass it", name)
		}
	}
	// Every var.X and local.X the file mentions is declared.
	for _, b := range tpl.body.Blocks {
		hclsyntax.VisitAll(b.Body, func(n hclsyntax.Node) hcl.Diagnostics {
			e, ok := n.(hclsyntax.Expression)
			if !ok {
				return nil
			}
			for _, tr := range e.Variables() {
				root := tr.RootName()
				if len(tr) < 2 {
					continue
				}
				attr, ok := tr[1].(hcl.TraverseAttr)
				if !ok {
					continue
				}
				switch root {
				case "var":
					if _, ok := tpl.variables[attr.Name]; !ok {
						t.Errorf("%s: var.%s is not declared", tr.SourceRange(), attr.Name)
					}
				case "local":
					if _, ok := tpl.locals[attr.Name]; !ok {
						t.Errorf("%s: local.%s is not declared", tr.SourceRange(), attr.Name)
					}
				case "path", "build", "source", "packer":
				default:
					t.Errorf("%s: unknown reference %s", tr.SourceRange(), root)
				}
			}
			return nil
		})
	}
	// The build's sources name declared source blocks.
	declared := map[string]bool{}
	for _, b := range tpl.body.Blocks {
		if b.Type == "source" {
			declared["source."+b.Labels[0]+"."+b.Labels[1]] = true
		}
	}
	vals := evalBlocks(t, tpl.body, tpl.evalContext(t, nil), "build")
	for _, s := range strList(t, vals["build.sources"]) {
		if !declared[s] {
			t.Errorf("build source %q is not declared (have %v)", s, keys(declared))
		}
	}
}

func TestVariableValidations(t *testing.T) {
	tpl := parseTemplate(t)
	check := func(overrides map[string]cty.Value) (failed []string) {
		ctx := tpl.evalContext(t, overrides)
		for name, v := range tpl.variables {
			for _, vd := range v.validations {
				res, diags := vd.condition.Value(ctx)
				if diags.HasErrors() {
					t.Fatalf("variable %q: condition: %s", name, diags.Error())
				}
				if res.Type() != cty.Bool {
					t.Fatalf("variable %q: condition is %s, not bool", name, res.Type().FriendlyName())
				}
				if res.False() {
					failed = append(failed, name)
				}
			}
		}
		sort.Strings(failed)
		return failed
	}
	if f := check(nil); len(f) != 0 {
		t.Errorf("defaults fail validation of %v", f)
	}
	for _, tc := range []struct {
		name string
		vars map[string]cty.Value
		want []string
	}{
		{"arm64", map[string]cty.Value{"arch": cty.StringVal("arm64"), "rpm_path": cty.StringVal("/tmp/dovetail-agent-1.2.3+git4.abc-1.aarch64.rpm")}, nil},
		{"bad arch", map[string]cty.Value{"arch": cty.StringVal("amd64")}, []string{"arch"}},
		{"bad k8s", map[string]cty.Value{"kubernetes_version": cty.StringVal("v1.37.2")}, []string{"kubernetes_version"}},
		{"a deb", map[string]cty.Value{"rpm_path": cty.StringVal("dist/dovetail-agent_1.2.3-1_amd64.deb")}, []string{"rpm_path"}},
	} {
		if got := check(tc.vars); !slices.Equal(got, tc.want) {
			t.Errorf("%s: failed validations %v, want %v", tc.name, got, tc.want)
		}
	}
}

// amiName is what EC2 accepts as an image name.
var amiName = regexp.MustCompile(`^[A-Za-z0-9()\[\] ./\-'@_]{3,128}$`)

func TestSourcePerArch(t *testing.T) {
	tpl := parseTemplate(t)
	cat, err := catalog.Load()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ arch, kubeArch, baseName string }{
		{"x86_64", "amd64", "amazon-eks-node-al2023-x86_64-standard-1.37-v*"},
		{"arm64", "arm64", "amazon-eks-node-al2023-arm64-standard-1.37-v*"},
	} {
		t.Run(tc.arch, func(t *testing.T) {
			ctx := tpl.evalContext(t, map[string]cty.Value{"arch": cty.StringVal(tc.arch)})
			src := evalBlocks(t, tpl.body, ctx, "source")
			const p = "source.amazon-ebs.al2023"

			filters := strMap(t, src[p+".source_ami_filter[0].filters"])
			if filters["name"] != tc.baseName || filters["architecture"] != tc.arch {
				t.Errorf("source_ami_filter.filters = %v, want name %s and architecture %s", filters, tc.baseName, tc.arch)
			}
			if got := strList(t, src[p+".source_ami_filter[0].owners"]); !slices.Equal(got, []string{"amazon"}) {
				t.Errorf("owners = %v", got)
			}
			if !src[p+".source_ami_filter[0].most_recent"].True() {
				t.Error("most_recent is not true: an old base AMI could be picked")
			}

			name := str(t, src, p+".ami_name")
			if !amiName.MatchString(name) || !strings.Contains(name, tc.arch) || !strings.HasSuffix(name, "-20261127093000") {
				t.Errorf("ami_name %q: not a valid, arch-specific, time-stamped EC2 image name", name)
			}

			it := str(t, src, p+".instance_type")
			typ, ok := cat.Get(it)
			if !ok {
				t.Fatalf("build instance type %s is not in the catalogue", it)
			}
			if typ.Arch != tc.kubeArch {
				t.Errorf("build instance type %s is %s, cannot boot a %s AMI", it, typ.Arch, tc.arch)
			}

			if str(t, src, p+".metadata_options[0].http_tokens") != "required" || str(t, src, p+".imds_support") != "v2.0" {
				t.Error("the build instance and the AMI must require IMDSv2")
			}
			if !src[p+".encrypt_boot"].True() {
				t.Error("encrypt_boot is not true")
			}

			tags := strMap(t, src[p+".tags"])
			want := map[string]string{
				"dovetail.dev/image":              "custom",
				"dovetail.dev/version":            "1.2.3",
				"dovetail.dev/kubernetes-version": "1.37",
				"dovetail.dev/arch":               tc.arch,
			}
			for k, v := range want {
				if tags[k] != v {
					t.Errorf("tag %s = %q, want %q", k, tags[k], v)
				}
			}
			if snap := strMap(t, src[p+".snapshot_tags"]); !mapsEqual(snap, tags) {
				t.Errorf("snapshot_tags %v differ from tags %v", snap, tags)
			}
		})
	}
	// extra_tags are added, but cannot override the selection tags.
	ctx := tpl.evalContext(t, map[string]cty.Value{"extra_tags": cty.MapVal(map[string]cty.Value{
		"team": cty.StringVal("platform"), "dovetail.dev/image": cty.StringVal("hijacked"),
	})})
	tags := strMap(t, evalBlocks(t, tpl.body, ctx, "source")["source.amazon-ebs.al2023.tags"])
	if tags["team"] != "platform" || tags["dovetail.dev/image"] != "custom" {
		t.Errorf("with extra_tags: %v", tags)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}

func TestBuildProvisioners(t *testing.T) {
	tpl := parseTemplate(t)
	vals := evalBlocks(t, tpl.body, tpl.evalContext(t, nil), "build")

	if got := str(t, vals, "build.provisioner.file[0].source"); got != required["rpm_path"].AsString() {
		t.Errorf("file provisioner uploads %q, want var.rpm_path", got)
	}
	dest := str(t, vals, "build.provisioner.file[0].destination")
	env := strList(t, vals["build.provisioner.shell[0].environment_vars"])
	if !slices.Contains(env, "RPM="+dest) {
		t.Errorf("shell provisioner env %v does not point RPM at the uploaded %s", env, dest)
	}
	if !slices.Contains(env, "DOVETAIL_VERSION=1.2.3") {
		t.Errorf("shell provisioner env %v does not pass the expected version", env)
	}
	if cmd := str(t, vals, "build.provisioner.shell[0].execute_command"); !strings.Contains(cmd, "sudo") {
		t.Errorf("execute_command %q does not run the script as root", cmd)
	}
	script := str(t, vals, "build.provisioner.shell[0].script")
	if out, err := exec.Command("bash", "-n", script).CombinedOutput(); err != nil {
		t.Fatalf("bash -n %s: %v\n%s", script, err, out)
	}
	b, err := os.ReadFile(script)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`dnf install -y "$rpm_file"`, `systemctl enable "$unit"`, "systemctl is-enabled", "rm -rf /var/lib/dovetail-agent"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("%s does not contain %q", script, want)
		}
	}
	if got := str(t, vals, "build.post-processor.manifest[0].output"); filepath.Base(got) != got {
		t.Errorf("manifest output %q should be a plain file name", got)
	}
}

// knownOptions are the Packer options this template may use, per block path
// (from the amazon plugin's and Packer's documentation). HCL itself accepts
// any attribute name, so without this a misspelt option would only surface
// in `packer validate` on a machine that has Packer.
var knownOptions = map[string][]string{
	"packer":                                         {"required_version"},
	"packer.required_plugins":                        {"amazon"},
	"source.amazon-ebs":                              {"region", "instance_type", "subnet_id", "ssh_username", "ami_name", "ami_description", "ami_users", "ami_regions", "encrypt_boot", "kms_key_id", "imds_support", "tags", "snapshot_tags", "run_tags", "associate_public_ip_address", "iam_instance_profile", "ssh_interface", "temporary_security_group_source_public_ip", "vpc_id", "security_group_ids", "ena_support", "sriov_support", "deprecate_at", "ssh_timeout"},
	"source.amazon-ebs.source_ami_filter":            {"filters", "owners", "most_recent"},
	"source.amazon-ebs.metadata_options":             {"http_endpoint", "http_tokens", "http_put_response_hop_limit", "instance_metadata_tags"},
	"source.amazon-ebs.launch_block_device_mappings": {"device_name", "volume_size", "volume_type", "delete_on_termination", "encrypted", "iops", "throughput", "kms_key_id"},
	"build":                         {"name", "sources"},
	"build.provisioner.file":        {"source", "destination", "direction", "generated"},
	"build.provisioner.shell":       {"script", "scripts", "inline", "environment_vars", "execute_command", "expect_disconnect", "pause_before", "max_retries", "timeout"},
	"build.post-processor.manifest": {"output", "strip_path", "strip_time", "custom_data"},
}

func TestKnownOptions(t *testing.T) {
	tpl := parseTemplate(t)
	var walk func(path string, b *hclsyntax.Body)
	walk = func(path string, b *hclsyntax.Body) {
		allowed, ok := knownOptions[path]
		if !ok && len(b.Attributes) > 0 {
			t.Errorf("block %s is not one this test knows", path)
		}
		for name, a := range b.Attributes {
			if !slices.Contains(allowed, name) {
				t.Errorf("%s: %s is not a known option of %s", a.SrcRange, name, path)
			}
		}
		for _, nb := range b.Blocks {
			p := path + "." + nb.Type
			if nb.Type == "provisioner" || nb.Type == "post-processor" {
				p += "." + nb.Labels[0]
			}
			walk(p, nb.Body)
		}
	}
	for _, b := range tpl.body.Blocks {
		switch b.Type {
		case "packer", "build":
			walk(b.Type, b.Body)
		case "source":
			walk("source."+b.Labels[0], b.Body)
		}
	}
}
