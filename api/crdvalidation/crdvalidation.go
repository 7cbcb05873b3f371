// Package crdvalidation checks objects against CustomResourceDefinitions the
// way the Kubernetes API server does on create and update, without a
// cluster: unknown fields, defaulting, the OpenAPI schema, list types and the
// CEL (x-kubernetes-validations) rules, with the API server's own code from
// k8s.io/apiextensions-apiserver. It also refuses CRDs the API server would
// refuse (non-structural schemas, CEL rules that do not compile or are too
// expensive).
//
// The CLI uses it to vet manifests offline; tests use it to prove every
// example is accepted and every invalid example is refused with its message.
package crdvalidation

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsinstall "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/install"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	crdvalidation "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/validation"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	structuraldefaulting "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
	structurallisttype "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/listtype"
	structuralpruning "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	schemavalidation "k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	celconfig "k8s.io/apiserver/pkg/apis/cel"

	"github.com/dovetail-dev/dovetail/packaging/crds"
)

// Validator validates objects of the kinds its CRDs define.
type Validator struct {
	kinds map[schema.GroupVersionKind]*kindSchema
}

type kindSchema struct {
	crdName    string
	namespaced bool
	structural *structuralschema.Structural
	schema     schemavalidation.SchemaValidator
	cel        *cel.Validator
}

var scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	apiextensionsinstall.Install(s)
	return s
}()

// New builds a Validator for the given CRDs. It fails, listing every problem,
// if the API server would refuse one of them.
func New(ctx context.Context, crds ...*apiextensionsv1.CustomResourceDefinition) (*Validator, error) {
	v := &Validator{kinds: map[schema.GroupVersionKind]*kindSchema{}}
	var errs []error
	for _, external := range crds {
		if err := v.add(ctx, external); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return v, nil
}

func (v *Validator) add(ctx context.Context, external *apiextensionsv1.CustomResourceDefinition) error {
	// Default and convert to the internal version, as the API server does
	// before it validates a CRD.
	external = external.DeepCopy()
	scheme.Default(external)
	internal := &apiextensions.CustomResourceDefinition{}
	if err := scheme.Convert(external, internal, nil); err != nil {
		return fmt.Errorf("converting CRD %s: %w", external.Name, err)
	}
	if errs := crdvalidation.ValidateCustomResourceDefinition(ctx, internal); len(errs) > 0 {
		return fmt.Errorf("CRD %s would be refused by the API server: %w", internal.Name, errs.ToAggregate())
	}
	for _, ver := range internal.Spec.Versions {
		props := internal.Spec.Validation
		if ver.Schema != nil {
			props = ver.Schema
		}
		if props == nil || props.OpenAPIV3Schema == nil {
			return fmt.Errorf("CRD %s version %s has no schema", internal.Name, ver.Name)
		}
		structural, err := structuralschema.NewStructural(props.OpenAPIV3Schema)
		if err != nil {
			return fmt.Errorf("CRD %s version %s: schema is not structural: %w", internal.Name, ver.Name, err)
		}
		sv, _, err := schemavalidation.NewSchemaValidator(props.OpenAPIV3Schema)
		if err != nil {
			return fmt.Errorf("CRD %s version %s: building schema validator: %w", internal.Name, ver.Name, err)
		}
		gvk := schema.GroupVersionKind{Group: internal.Spec.Group, Version: ver.Name, Kind: internal.Spec.Names.Kind}
		v.kinds[gvk] = &kindSchema{
			crdName:    internal.Name,
			namespaced: internal.Spec.Scope == apiextensions.NamespaceScoped,
			structural: structural,
			schema:     sv,
			cel:        cel.NewValidator(structural, true, celconfig.PerCallLimit),
		}
	}
	return nil
}

// Kinds lists the kinds the Validator knows, sorted.
func (v *Validator) Kinds() []schema.GroupVersionKind {
	out := make([]schema.GroupVersionKind, 0, len(v.kinds))
	for gvk := range v.kinds {
		out = append(out, gvk)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// Validate checks obj as the API server checks a create. Like the API server
// it applies the schema's defaults to obj; unlike it, it reports unknown
// fields as errors rather than silently dropping them, since a typo in a
// manifest is a mistake the user wants to hear about.
func (v *Validator) Validate(ctx context.Context, obj *unstructured.Unstructured) error {
	return v.validate(ctx, obj, nil)
}

// ValidateUpdate checks obj as an update of old (transition rules such as
// "spec is immutable" apply). Both are defaulted.
func (v *Validator) ValidateUpdate(ctx context.Context, obj, old *unstructured.Unstructured) error {
	if old == nil {
		return errors.New("ValidateUpdate needs the old object")
	}
	return v.validate(ctx, obj, old)
}

func (v *Validator) validate(ctx context.Context, obj, old *unstructured.Unstructured) error {
	gvk := obj.GroupVersionKind()
	ks, ok := v.kinds[gvk]
	if !ok {
		return fmt.Errorf("no CRD for %s", gvk)
	}
	errs := ks.check(ctx, obj, old)
	if len(errs) == 0 {
		return nil
	}
	// Word the error as the API server does, so tests can match the same substrings.
	return fmt.Errorf("%s.%s %q is invalid: %w", gvk.Kind, gvk.Group, obj.GetName(), errs.ToAggregate())
}

func (ks *kindSchema) check(ctx context.Context, obj, old *unstructured.Unstructured) field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, ks.checkMeta(obj)...)

	opts := structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true}
	for _, p := range structuralpruning.PruneWithOptions(obj.Object, ks.structural, true, opts) {
		errs = append(errs, field.Invalid(field.NewPath(p), nil, "unknown field"))
	}
	structuraldefaulting.Default(obj.Object, ks.structural)

	var oldObject interface{}
	if old != nil {
		structuralpruning.Prune(old.Object, ks.structural, true)
		structuraldefaulting.Default(old.Object, ks.structural)
		oldObject = old.Object
		errs = append(errs, schemavalidation.ValidateCustomResourceUpdate(nil, obj.Object, old.Object, ks.schema)...)
	} else {
		errs = append(errs, schemavalidation.ValidateCustomResource(nil, obj.Object, ks.schema)...)
	}
	errs = append(errs, structurallisttype.ValidateListSetsAndMaps(nil, ks.structural, obj.Object)...)
	celErrs, _ := ks.cel.Validate(ctx, nil, ks.structural, obj.Object, oldObject, celconfig.RuntimeCELCostBudget)
	return append(errs, celErrs...)
}

func (ks *kindSchema) checkMeta(obj *unstructured.Unstructured) field.ErrorList {
	var errs field.ErrorList
	name := field.NewPath("metadata", "name")
	switch {
	case obj.GetName() == "" && obj.GetGenerateName() == "":
		errs = append(errs, field.Required(name, "name or generateName is required"))
	case obj.GetName() != "":
		for _, msg := range utilvalidation.IsDNS1123Subdomain(obj.GetName()) {
			errs = append(errs, field.Invalid(name, obj.GetName(), msg))
		}
	}
	if !ks.namespaced && obj.GetNamespace() != "" {
		// The API server ignores a namespace on cluster-scoped objects, but
		// in a manifest it is a sign of a misunderstanding worth reporting.
		errs = append(errs, field.Invalid(field.NewPath("metadata", "namespace"), obj.GetNamespace(),
			ks.crdName+" is cluster-scoped"))
	}
	return errs
}

// DecodeCRDs reads every CustomResourceDefinition in the *.yaml, *.yml and
// *.json files of fsys (not recursive). Other kinds are skipped.
func DecodeCRDs(fsys fs.FS) ([]*apiextensionsv1.CustomResourceDefinition, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("listing CRD files: %w", err)
	}
	var out []*apiextensionsv1.CustomResourceDefinition
	for _, e := range entries {
		if e.IsDir() || !isManifest(e.Name()) {
			continue
		}
		data, err := fs.ReadFile(fsys, e.Name())
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", e.Name(), err)
		}
		objs, err := DecodeManifests(data)
		if err != nil {
			return nil, fmt.Errorf("decoding %s: %w", e.Name(), err)
		}
		for _, o := range objs {
			if o.GroupVersionKind() != apiextensionsv1.SchemeGroupVersion.WithKind("CustomResourceDefinition") {
				continue
			}
			crd := &apiextensionsv1.CustomResourceDefinition{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(o.Object, crd, true); err != nil {
				return nil, fmt.Errorf("%s: CRD %s: %w", e.Name(), o.GetName(), err)
			}
			out = append(out, crd)
		}
	}
	return out, nil
}

func isManifest(name string) bool {
	switch path.Ext(name) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

// DecodeManifests splits a YAML (multi-document) or JSON manifest into
// objects, skipping empty documents and flattening kind: List. Each object
// must have apiVersion and kind. Numbers decode as the API server decodes
// them (int64 where integral), which CEL rules depend on.
func DecodeManifests(data []byte) ([]*unstructured.Unstructured, error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var out []*unstructured.Unstructured
	for i := 0; ; i++ {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		js, err := utilyaml.ToJSON(doc)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		if t := bytes.TrimSpace(js); len(t) == 0 || bytes.Equal(t, []byte("null")) || bytes.Equal(t, []byte("{}")) {
			continue
		}
		obj, err := runtime.Decode(unstructured.UnstructuredJSONScheme, js)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		switch o := obj.(type) {
		case *unstructured.Unstructured:
			out = append(out, o)
		case *unstructured.UnstructuredList:
			for j := range o.Items {
				out = append(out, &o.Items[j])
			}
		default:
			return nil, fmt.Errorf("document %d: unexpected %T", i, obj)
		}
	}
}

// ForDovetail returns a Validator for Dovetail's own CRDs (NodePool,
// NodeClaim, EC2NodeClass), embedded in the binary by package crds.
func ForDovetail(ctx context.Context) (*Validator, error) {
	defs, err := DecodeCRDs(crds.FS)
	if err != nil {
		return nil, err
	}
	return New(ctx, defs...)
}
