package provisioning

import (
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// unstructuredObj wraps a converted map for the fake dynamic client.
type unstructuredObj = unstructured.Unstructured
