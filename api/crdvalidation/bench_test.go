package crdvalidation

import (
	"context"
	"os"
	"testing"
)

// BenchmarkValidateExamples measures offline validation of every example
// manifest (decode excluded): what `dovetail` pays to vet a user's directory.
func BenchmarkValidateExamples(b *testing.B) {
	defs, err := DecodeCRDs(os.DirFS(crdDir))
	if err != nil {
		b.Fatal(err)
	}
	v, err := New(context.Background(), defs...)
	if err != nil {
		b.Fatal(err)
	}
	var files [][]byte
	for _, f := range manifestFiles(b, examples) {
		data, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		files = append(files, data)
	}
	ctx := context.Background()
	b.ResetTimer()
	objects := 0
	for i := 0; i < b.N; i++ {
		for _, data := range files {
			objs, err := DecodeManifests(data)
			if err != nil {
				b.Fatal(err)
			}
			for _, o := range objs {
				if err := v.Validate(ctx, o); err != nil {
					b.Fatal(err)
				}
				objects++
			}
		}
	}
	b.ReportMetric(float64(objects)/float64(b.N), "objects/op")
}

// BenchmarkNewValidator measures compiling the three CRDs (schema and CEL).
func BenchmarkNewValidator(b *testing.B) {
	defs, err := DecodeCRDs(os.DirFS(crdDir))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		if _, err := New(ctx, defs...); err != nil {
			b.Fatal(err)
		}
	}
}
