package ec2sim

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// ssmParameter is the JSON shape of an SSM Parameter.
type ssmParameter struct {
	Name             string  `json:"Name"`
	Type             string  `json:"Type"`
	Value            string  `json:"Value"`
	Version          int64   `json:"Version"`
	LastModifiedDate float64 `json:"LastModifiedDate"`
	ARN              string  `json:"ARN"`
	DataType         string  `json:"DataType"`
}

// serveSSM answers SSM's JSON 1.1 protocol (X-Amz-Target: AmazonSSM.X).
func (s *Sim) serveSSM(w http.ResponseWriter, r *http.Request) {
	w = flooredWriter{w, time.Now()}
	target := strings.TrimPrefix(r.Header.Get("X-Amz-Target"), "AmazonSSM.")
	s.metrics.calls.WithLabelValues("ssm:" + target).Inc()
	reqID := newRequestID()
	fail := func(status int, code, msg string) {
		s.metrics.errors.WithLabelValues("ssm:"+target, code).Inc()
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		w.Header().Set("x-amzn-RequestId", reqID)
		b, _ := json.Marshal(map[string]string{"__type": code, "message": msg})
		writeBody(w, status, b)
	}
	if !s.admit(r) {
		fail(400, "ThrottlingException", "Rate exceeded")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		fail(400, "SerializationException", err.Error())
		return
	}
	var in struct {
		Name  string   `json:"Name"`
		Names []string `json:"Names"`
	}
	if len(body) > 0 {
		if err := json.Unmarshal(body, &in); err != nil {
			fail(400, "SerializationException", "could not parse request body: "+err.Error())
			return
		}
	}
	var out any
	s.mu.Lock()
	switch target {
	case "GetParameter":
		name, _, _ := strings.Cut(in.Name, ":") // a :version or :label selector reads the current value here
		p := s.ssmParams[name]
		if p == nil {
			s.mu.Unlock()
			fail(400, "ParameterNotFound", fmt.Sprintf("Parameter %s not found.", in.Name))
			return
		}
		out = map[string]any{"Parameter": s.ssmJSON(p)}
	case "GetParameters":
		params := []ssmParameter{}
		invalid := []string{}
		for _, n := range in.Names {
			name, _, _ := strings.Cut(n, ":")
			if p := s.ssmParams[name]; p != nil {
				params = append(params, s.ssmJSON(p))
			} else {
				invalid = append(invalid, n)
			}
		}
		out = map[string]any{"Parameters": params, "InvalidParameters": invalid}
	default:
		s.mu.Unlock()
		fail(400, "InvalidAction", "The simulator does not implement AmazonSSM."+target)
		return
	}
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("x-amzn-RequestId", reqID)
	b, _ := json.Marshal(out)
	writeBody(w, http.StatusOK, b)
}

func (s *Sim) ssmJSON(p *ssmParam) ssmParameter {
	return ssmParameter{
		Name: p.name, Type: "String", Value: p.value, Version: p.version,
		LastModifiedDate: float64(p.modified.UnixMilli()) / 1000,
		ARN:              fmt.Sprintf("arn:aws:ssm:%s::parameter%s", s.cfg.Region, p.name),
		DataType:         "aws:ec2:image",
	}
}
