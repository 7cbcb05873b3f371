package provisioning

import (
	"os"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func metaOwner(kind string) metav1.OwnerReference {
	return metav1.OwnerReference{Kind: kind, Name: "x", APIVersion: "apps/v1"}
}

func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o600) }
