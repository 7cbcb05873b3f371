package nodepoolstatus

import (
	"errors"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// validLabelKey checks a key is a qualified name (an optional DNS-subdomain
// prefix and a name of at most 63 characters), which the CRD does not check
// for template labels (nor does Karpenter's).
func validLabelKey(k string) error {
	if errs := validation.IsQualifiedName(k); len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}
