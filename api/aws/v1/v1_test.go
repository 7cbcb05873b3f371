package v1

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"
)

func TestParseAlias(t *testing.T) {
	for in, want := range map[string]Alias{
		"al2023@latest":        {Family: "al2023", Version: "latest"},
		"AL2023@latest":        {Family: "al2023", Version: "latest"},
		"bottlerocket@v1.20.5": {Family: "bottlerocket", Version: "v1.20.5"},
		"al2@v20240729":        {Family: "al2", Version: "v20240729"},
		"windows2022@latest":   {Family: "windows2022", Version: "latest"},
	} {
		got, err := ParseAlias(in)
		if err != nil {
			t.Errorf("ParseAlias(%q): %v", in, err)
			continue
		}
		if got != want {
			t.Errorf("ParseAlias(%q) = %+v, want %+v", in, got, want)
		}
		if strings.ToLower(in) != got.String() {
			t.Errorf("%q formats back as %q", in, got.String())
		}
	}
	for in, msg := range map[string]string{
		"al2023":         "improperly formatted",
		"al2023@":        "improperly formatted",
		"@latest":        "improperly formatted",
		"ubuntu@latest":  "not supported",
		"windows2019@v1": "only specify version",
		"windows2025@v1": "only specify version",
		"":               "improperly formatted",
	} {
		_, err := ParseAlias(in)
		if err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("ParseAlias(%q) error = %v, want %q", in, err, msg)
		}
	}
}

func TestAMIFamily(t *testing.T) {
	custom := AMIFamilyCustom
	for _, tc := range []struct {
		spec EC2NodeClassSpec
		want string
	}{
		{EC2NodeClassSpec{AMISelectorTerms: []AMISelectorTerm{{Alias: "al2023@latest"}}}, AMIFamilyAL2023},
		{EC2NodeClassSpec{AMISelectorTerms: []AMISelectorTerm{{Alias: "bottlerocket@v1.20.5"}}}, AMIFamilyBottlerocket},
		{EC2NodeClassSpec{AMIFamily: &custom, AMISelectorTerms: []AMISelectorTerm{{Alias: "al2023@latest"}}}, AMIFamilyCustom},
		{EC2NodeClassSpec{AMISelectorTerms: []AMISelectorTerm{{Tags: map[string]string{"a": "b"}}}}, AMIFamilyCustom},
	} {
		nc := &EC2NodeClass{Spec: tc.spec}
		if got := nc.AMIFamily(); got != tc.want {
			t.Errorf("AMIFamily(%+v) = %s, want %s", tc.spec, got, tc.want)
		}
	}
	nc := &EC2NodeClass{Spec: EC2NodeClassSpec{AMISelectorTerms: []AMISelectorTerm{{Alias: "nope"}}}}
	if _, ok, err := nc.Alias(); !ok || err == nil {
		t.Errorf("bad alias: ok=%v err=%v", ok, err)
	}
	if _, ok, _ := (&EC2NodeClass{}).Alias(); ok {
		t.Error("alias found in an empty node class")
	}
}

const karpenterNodeClass = `apiVersion: karpenter.k8s.aws/v1
kind: EC2NodeClass
metadata:
  name: default
spec:
  kubelet:
    podsPerCore: 2
    maxPods: 20
    systemReserved:
      cpu: 100m
      memory: 100Mi
      ephemeral-storage: 1Gi
    kubeReserved:
      cpu: 200m
      memory: 100Mi
      ephemeral-storage: 3Gi
    evictionHard:
      memory.available: 5%
      nodefs.available: 10%
      nodefs.inodesFree: 10%
    evictionSoft:
      memory.available: 500Mi
      nodefs.available: 15%
      nodefs.inodesFree: 15%
    evictionSoftGracePeriod:
      memory.available: 1m0s
      nodefs.available: 1m30s
      nodefs.inodesFree: 2m0s
    evictionMaxPodGracePeriod: 60
    imageGCHighThresholdPercent: 85
    imageGCLowThresholdPercent: 80
    cpuCFSQuota: true
    clusterDNS: ["10.0.1.100"]
  amiFamily: AL2023
  subnetSelectorTerms:
    - tags:
        karpenter.sh/discovery: "${CLUSTER_NAME}"
        environment: test
    - id: subnet-09fa4a0a8f233a921
  securityGroupSelectorTerms:
    - tags:
        karpenter.sh/discovery: "${CLUSTER_NAME}"
        environment: test
    - name: my-security-group
    - id: sg-063d7acfb4b06c82c
  role: "KarpenterNodeRole-${CLUSTER_NAME}"
  amiSelectorTerms:
    - tags:
        karpenter.sh/discovery: "${CLUSTER_NAME}"
        environment: test
    - name: my-ami
    - id: ami-123
    - ssmParameter: my-custom-parameter
  tags:
    team: team-a
    app: team-a-app
  metadataOptions:
    httpEndpoint: enabled
    httpProtocolIPv6: disabled
    httpPutResponseHopLimit: 1
    httpTokens: required
  blockDeviceMappings:
    - deviceName: /dev/xvda
      ebs:
        volumeSize: 100Gi
        volumeType: gp3
        iops: 10000
        encrypted: true
        kmsKeyID: "1234abcd-12ab-34cd-56ef-1234567890ab"
        deleteOnTermination: true
        throughput: 125
        snapshotID: snap-0123456789
  instanceStorePolicy: RAID0
  userData: |
    echo "Hello world"
  detailedMonitoring: true
  associatePublicIPAddress: true
status:
  subnets:
    - id: subnet-0a462d98193ff9fac
      zone: us-east-2b
      zoneID: use2-az2
  securityGroups:
    - id: sg-041513b454818610b
      name: ClusterSharedNodeSecurityGroup
  amis:
    - id: ami-01234567890123456
      name: custom-ami-amd64
      requirements:
        - key: kubernetes.io/arch
          operator: In
          values:
            - amd64
  instanceProfile: "${CLUSTER_NAME}-0123456778901234567789"
  conditions:
    - lastTransitionTime: "2024-02-02T19:54:34Z"
      status: "True"
      message: ""
      reason: Ready
      type: Ready
`

func TestEC2NodeClassRoundTrip(t *testing.T) {
	var nc EC2NodeClass
	if err := yaml.UnmarshalStrict([]byte(karpenterNodeClass), &nc); err != nil {
		t.Fatalf("decoding Karpenter's manifest: %v", err)
	}
	if got := nc.Spec.BlockDeviceMappings[0].EBS.VolumeSize; got == nil || got.Cmp(resource.MustParse("100Gi")) != 0 {
		t.Errorf("volumeSize = %v", got)
	}
	if *nc.Spec.Kubelet.MaxPods != 20 || nc.Spec.Kubelet.EvictionSoftGracePeriod["nodefs.available"].Duration.Seconds() != 90 {
		t.Errorf("kubelet = %+v", nc.Spec.Kubelet)
	}
	if nc.Status.Subnets[0].ZoneID != "use2-az2" || nc.Status.AMIs[0].Requirements[0].Values[0] != "amd64" || !nc.IsTrue(ConditionTypeReady) {
		t.Errorf("status = %+v", nc.Status)
	}
	out, err := json.Marshal(&nc)
	if err != nil {
		t.Fatal(err)
	}
	wantJSON, err := yaml.YAMLToJSON([]byte(karpenterNodeClass))
	if err != nil {
		t.Fatal(err)
	}
	var want, have map[string]interface{}
	if err := json.Unmarshal(wantJSON, &want); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(out, &have); err != nil {
		t.Fatal(err)
	}
	delete(have["metadata"].(map[string]interface{}), "creationTimestamp")
	if !reflect.DeepEqual(want, have) {
		t.Fatalf("round trip changed the object:\nwant %s\ngot  %s", wantJSON, out)
	}
}

func TestSchemeAndConditions(t *testing.T) {
	s := runtime.NewScheme()
	if err := AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	gvks, _, err := s.ObjectKinds(&EC2NodeClass{})
	if err != nil || len(gvks) != 1 || gvks[0] != SchemeGroupVersion.WithKind(Kind) {
		t.Fatalf("EC2NodeClass registered as %v (%v)", gvks, err)
	}
	nc := &EC2NodeClass{ObjectMeta: metav1.ObjectMeta{Generation: 2}}
	nc.SetFalse(ConditionTypeSubnetsReady, "SubnetsNotFound", "no subnet matches karpenter.sh/discovery=dovetail-local")
	nc.SetTrue(ConditionTypeAMIsReady, "", "")
	if nc.IsTrue(ConditionTypeSubnetsReady) || !nc.IsTrue(ConditionTypeAMIsReady) || nc.GetCondition(ConditionTypeAMIsReady).ObservedGeneration != 2 {
		t.Errorf("conditions = %+v", nc.Status.Conditions)
	}
}
