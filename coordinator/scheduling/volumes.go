package scheduling

import (
	"fmt"
	"math"
	"strings"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
)

// volumeZones resolves the zones a pod's persistent volumes pin it to.
type volumeZones struct {
	pvcs map[string]*corev1.PersistentVolumeClaim // namespace/name
	pvs  map[string]*corev1.PersistentVolume
	scs  map[string]*storagev1.StorageClass
}

var zoneKeys = []string{LabelZone, "failure-domain.beta.kubernetes.io/zone", "topology.ebs.csi.aws.com/zone"}

func newVolumeZones(s *Snapshot) *volumeZones {
	v := &volumeZones{pvcs: map[string]*corev1.PersistentVolumeClaim{}, pvs: map[string]*corev1.PersistentVolume{}, scs: map[string]*storagev1.StorageClass{}}
	for _, c := range s.PersistentVolumeClaims {
		if c != nil {
			v.pvcs[c.Namespace+"/"+c.Name] = c
		}
	}
	for _, p := range s.PersistentVolumes {
		if p != nil {
			v.pvs[p.Name] = p
		}
	}
	for _, c := range s.StorageClasses {
		if c != nil {
			v.scs[c.Name] = c
		}
	}
	return v
}

// forPod returns the zone requirement implied by the pod's volumes, a key
// describing it, and an error when a claim it needs does not exist.
func (v *volumeZones) forPod(p *corev1.Pod) (requirements, string, error) {
	reqs := requirements{}
	var keys []string
	for _, vol := range p.Spec.Volumes {
		var claimName string
		switch {
		case vol.PersistentVolumeClaim != nil:
			claimName = vol.PersistentVolumeClaim.ClaimName
		case vol.Ephemeral != nil:
			claimName = p.Name + "-" + vol.Name
		default:
			continue
		}
		pvc, ok := v.pvcs[p.Namespace+"/"+claimName]
		if !ok {
			if vol.Ephemeral != nil || len(v.pvcs) == 0 {
				// Not in the snapshot (ephemeral claims are created with the
				// pod; offline snapshots often omit claims): no zone constraint.
				continue
			}
			return reqs, "", fmt.Errorf("persistentvolumeclaim %s/%s not found", p.Namespace, claimName)
		}
		zones := v.claimZones(pvc)
		if zones == nil {
			continue
		}
		keys = append(keys, strings.Join(zones, ","))
		reqs.add(LabelZone, valueSet{values: sortedUnique(zones), gt: math.MinInt64, lt: math.MaxInt64})
	}
	return reqs, strings.Join(keys, ";"), nil
}

func (v *volumeZones) claimZones(pvc *corev1.PersistentVolumeClaim) []string {
	if pvc.Spec.VolumeName != "" {
		pv, ok := v.pvs[pvc.Spec.VolumeName]
		if !ok {
			return nil
		}
		var zones []string
		if pv.Spec.NodeAffinity != nil && pv.Spec.NodeAffinity.Required != nil {
			for _, t := range pv.Spec.NodeAffinity.Required.NodeSelectorTerms {
				for _, e := range t.MatchExpressions {
					if isZoneKey(e.Key) && e.Operator == corev1.NodeSelectorOpIn {
						zones = append(zones, e.Values...)
					}
				}
			}
		}
		for _, k := range zoneKeys {
			if z, ok := pv.Labels[k]; ok {
				zones = append(zones, z)
			}
		}
		return zones
	}
	if pvc.Spec.StorageClassName == nil {
		return nil
	}
	sc, ok := v.scs[*pvc.Spec.StorageClassName]
	if !ok || sc.VolumeBindingMode == nil || *sc.VolumeBindingMode != storagev1.VolumeBindingWaitForFirstConsumer {
		return nil
	}
	var zones []string
	for _, t := range sc.AllowedTopologies {
		for _, e := range t.MatchLabelExpressions {
			if isZoneKey(e.Key) {
				zones = append(zones, e.Values...)
			}
		}
	}
	return zones
}

func isZoneKey(k string) bool {
	for _, z := range zoneKeys {
		if k == z {
			return true
		}
	}
	return false
}
