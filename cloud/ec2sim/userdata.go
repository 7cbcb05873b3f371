package ec2sim

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"regexp"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

var (
	nodeLabelsFlag = regexp.MustCompile(`--node-labels[= ]["']?([^\s"'\\\]]+)`)
	taintsFlag     = regexp.MustCompile(`--register-with-taints[= ]["']?([^\s"'\\\]]+)`)
)

// parseKubeletFlags finds the labels and taints the kubelet would register
// the node with, wherever the user data hides them: kubelet flags in a
// shell script (bootstrap.sh --kubelet-extra-args), in AL2023 nodeadm YAML
// (spec.kubelet.flags), in any part of a MIME multi-part document, or in
// Bottlerocket TOML ([settings.kubernetes.node-labels] / node-taints).
func parseKubeletFlags(userData []byte) (map[string]string, []corev1.Taint) {
	labels := map[string]string{}
	var taints []corev1.Taint
	for _, doc := range userDataDocuments(userData, 0) {
		for _, m := range nodeLabelsFlag.FindAllSubmatch(doc, -1) {
			for _, kv := range strings.Split(string(m[1]), ",") {
				if k, v, ok := strings.Cut(kv, "="); ok && k != "" {
					labels[k] = v
				}
			}
		}
		for _, m := range taintsFlag.FindAllSubmatch(doc, -1) {
			for _, t := range strings.Split(string(m[1]), ",") {
				if taint, ok := parseTaint(t); ok {
					taints = append(taints, taint)
				}
			}
		}
		bl, bt := parseBottlerocket(doc)
		for k, v := range bl {
			labels[k] = v
		}
		taints = append(taints, bt...)
	}
	return labels, dedupeTaints(taints)
}

// parseTaint reads key[=value]:Effect.
func parseTaint(s string) (corev1.Taint, bool) {
	s = strings.TrimSpace(s)
	kv, effect, ok := strings.Cut(s, ":")
	if !ok || kv == "" {
		return corev1.Taint{}, false
	}
	switch corev1.TaintEffect(effect) {
	case corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule, corev1.TaintEffectNoExecute:
	default:
		return corev1.Taint{}, false
	}
	k, v, _ := strings.Cut(kv, "=")
	return corev1.Taint{Key: k, Value: v, Effect: corev1.TaintEffect(effect)}, true
}

func dedupeTaints(ts []corev1.Taint) []corev1.Taint {
	seen := map[string]bool{}
	var out []corev1.Taint
	for _, t := range ts {
		k := t.Key + "=" + t.Value + ":" + string(t.Effect)
		if !seen[k] {
			seen[k] = true
			out = append(out, t)
		}
	}
	return out
}

// userDataDocuments splits MIME multi-part user data into its decoded
// parts (recursively); anything else is one document.
func userDataDocuments(data []byte, depth int) [][]byte {
	if depth > 3 {
		return [][]byte{data}
	}
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if !bytes.HasPrefix(trimmed, []byte("MIME-Version")) && !bytes.HasPrefix(trimmed, []byte("Content-Type")) {
		// Base64-wrapped user data (a template's UserData was encoded twice).
		if dec, err := base64.StdEncoding.DecodeString(string(bytes.TrimSpace(data))); err == nil && len(dec) > 0 && depth == 0 {
			return userDataDocuments(dec, depth+1)
		}
		return [][]byte{data}
	}
	msg, err := mail.ReadMessage(bufio.NewReader(bytes.NewReader(trimmed)))
	if err != nil {
		return [][]byte{data}
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || !strings.HasPrefix(mt, "multipart/") || params["boundary"] == "" {
		body, _ := io.ReadAll(msg.Body)
		return [][]byte{decodePart(body, msg.Header.Get("Content-Transfer-Encoding"))}
	}
	var out [][]byte
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		part, err := mr.NextPart()
		if err != nil {
			break
		}
		body, err := io.ReadAll(part)
		if err != nil {
			break
		}
		body = decodePart(body, part.Header.Get("Content-Transfer-Encoding"))
		if pmt, _, _ := mime.ParseMediaType(part.Header.Get("Content-Type")); strings.HasPrefix(pmt, "multipart/") {
			out = append(out, userDataDocuments(append([]byte("Content-Type: "+part.Header.Get("Content-Type")+"\r\n\r\n"), body...), depth+1)...)
			continue
		}
		out = append(out, body)
	}
	if len(out) == 0 {
		return [][]byte{data}
	}
	return out
}

func decodePart(body []byte, enc string) []byte {
	if strings.EqualFold(strings.TrimSpace(enc), "base64") {
		if dec, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(string(body)), "")); err == nil {
			return dec
		}
	}
	return body
}

// parseBottlerocket reads the node-labels and node-taints tables of
// Bottlerocket's TOML settings. Taint values there are "value:Effect" or
// a list of them.
func parseBottlerocket(doc []byte) (map[string]string, []corev1.Taint) {
	labels := map[string]string{}
	var taints []corev1.Taint
	section := ""
	for _, line := range strings.Split(string(doc), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "[") {
			section = strings.Trim(line, "[] ")
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		k = strings.Trim(strings.TrimSpace(k), `"`)
		v = strings.TrimSpace(v)
		switch section {
		case "settings.kubernetes.node-labels":
			labels[k] = strings.Trim(v, `"`)
		case "settings.kubernetes.node-taints":
			for _, item := range strings.Split(strings.Trim(v, "[]"), ",") {
				item = strings.Trim(strings.TrimSpace(item), `"`)
				if item == "" {
					continue
				}
				if t, ok := parseTaint(k + "=" + item); ok {
					taints = append(taints, t)
				}
			}
		}
	}
	return labels, taints
}
