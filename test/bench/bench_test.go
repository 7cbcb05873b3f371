package bench

import (
	"os"
	"testing"

	"github.com/dovetail-dev/dovetail/catalog"
)

func TestTable(t *testing.T) {
	c, err := catalog.Load()
	if err != nil {
		t.Fatal(err)
	}
	sizes := []int{1, 50, 500, 5000}
	if testing.Short() {
		sizes = []int{1, 50}
	}
	var rows []Row
	for _, cs := range Cases(c.InstanceTypes("us-east-1", Zones), SyntheticTypes(), sizes) {
		rows = append(rows, Measure(cs))
	}
	Print(os.Stdout, rows)
}
