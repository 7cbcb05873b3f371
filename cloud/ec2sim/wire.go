package ec2sim

import (
	"bytes"
	"encoding/xml"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ec2Namespace is the XML namespace of EC2 API version 2016-11-15, the
// version every current SDK speaks.
const ec2Namespace = "http://ec2.amazonaws.com/doc/2016-11-15/"

// params wraps the form-encoded parameters of one EC2 Query request, which
// encode lists as Name.1, Name.2 ... and structures as Name.Field.
type params struct {
	v    url.Values
	keys []string // sorted, for prefix scans
}

func newParams(v url.Values) *params {
	p := &params{v: v, keys: make([]string, 0, len(v))}
	for k := range v {
		p.keys = append(p.keys, k)
	}
	sort.Strings(p.keys)
	return p
}

func (p *params) str(key string) string { return p.v.Get(key) }

func (p *params) int(key string, def int) int {
	s := p.v.Get(key)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return def
	}
	return n
}

func (p *params) float(key string) (float64, bool) {
	s := p.v.Get(key)
	if s == "" {
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	return f, err == nil
}

// indices lists N for every key prefix.N or prefix.N.*, ascending.
func (p *params) indices(prefix string) []int {
	pre := prefix + "."
	i := sort.SearchStrings(p.keys, pre)
	seen := map[int]bool{}
	var out []int
	for ; i < len(p.keys) && strings.HasPrefix(p.keys[i], pre); i++ {
		rest := p.keys[i][len(pre):]
		if dot := strings.IndexByte(rest, '.'); dot >= 0 {
			rest = rest[:dot]
		}
		n, err := strconv.Atoi(rest)
		if err != nil || seen[n] {
			continue
		}
		seen[n] = true
		out = append(out, n)
	}
	sort.Ints(out)
	return out
}

// prefixed returns every parameter whose key starts with prefix.
func (p *params) prefixed(prefix string) map[string]string {
	out := map[string]string{}
	for i := sort.SearchStrings(p.keys, prefix); i < len(p.keys) && strings.HasPrefix(p.keys[i], prefix); i++ {
		out[p.keys[i]] = p.v.Get(p.keys[i])
	}
	return out
}

// list returns the values of prefix.1, prefix.2, ... (a flattened string list).
func (p *params) list(prefix string) []string {
	var out []string
	for _, n := range p.indices(prefix) {
		if v := p.v.Get(prefix + "." + strconv.Itoa(n)); v != "" {
			out = append(out, v)
		}
	}
	return out
}

func idx(prefix string, n int) string { return prefix + "." + strconv.Itoa(n) }

// filter is one Filter.N entry.
type filter struct {
	Name   string
	Values []string
}

func (p *params) filters() []filter {
	var out []filter
	for _, n := range p.indices("Filter") {
		f := filter{Name: p.str(idx("Filter", n) + ".Name"), Values: p.list(idx("Filter", n) + ".Value")}
		if f.Name != "" {
			out = append(out, f)
		}
	}
	return out
}

// tagSpecs parses TagSpecification.N (ResourceType, Tag.M.Key/Value).
func (p *params) tagSpecs(prefix string) map[string]map[string]string {
	out := map[string]map[string]string{}
	for _, n := range p.indices(prefix) {
		base := idx(prefix, n)
		rt := p.str(base + ".ResourceType")
		tags := out[rt]
		if tags == nil {
			tags = map[string]string{}
			out[rt] = tags
		}
		for _, m := range p.indices(base + ".Tag") {
			tb := idx(base+".Tag", m)
			if k := p.str(tb + ".Key"); k != "" {
				tags[k] = p.str(tb + ".Value")
			}
		}
	}
	return out
}

// canonical renders the request without Action/Version, for comparing a
// replayed ClientToken request with the original.
func (p *params) canonical() string {
	var b strings.Builder
	for _, k := range p.keys {
		if k == "Action" || k == "Version" {
			continue
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(strings.Join(p.v[k], ","))
		b.WriteByte('&')
	}
	return b.String()
}

// matchWildcard matches EC2 filter values, where * is any sequence and ?
// any single character.
func matchWildcard(pattern, s string) bool {
	if !strings.ContainsAny(pattern, "*?") {
		return pattern == s
	}
	// Iterative glob match with backtracking on the last star.
	pi, si, star, mark := 0, 0, -1, 0
	for si < len(s) {
		switch {
		case pi < len(pattern) && (pattern[pi] == '?' || pattern[pi] == s[si]):
			pi++
			si++
		case pi < len(pattern) && pattern[pi] == '*':
			star, mark = pi, si
			pi++
		case star >= 0:
			pi = star + 1
			mark++
			si = mark
		default:
			return false
		}
	}
	for pi < len(pattern) && pattern[pi] == '*' {
		pi++
	}
	return pi == len(pattern)
}

func matchAny(patterns []string, s string) bool {
	for _, p := range patterns {
		if matchWildcard(p, s) {
			return true
		}
	}
	return false
}

// matchTags applies the tag:K and tag-key filters to a tag map; ok is false
// when the filter is not a tag filter.
func matchTags(f filter, tags map[string]string) (match, ok bool) {
	switch {
	case f.Name == "tag-key":
		for k := range tags {
			if matchAny(f.Values, k) {
				return true, true
			}
		}
		return false, true
	case f.Name == "tag-value":
		for _, v := range tags {
			if matchAny(f.Values, v) {
				return true, true
			}
		}
		return false, true
	case strings.HasPrefix(f.Name, "tag:"):
		v, has := tags[strings.TrimPrefix(f.Name, "tag:")]
		return has && matchAny(f.Values, v), true
	}
	return false, false
}

// xw builds an EC2 XML response. EC2 answers never have attributes beyond
// the root namespace, so a tiny writer is enough and much faster than
// reflection-based encoding.
type xw struct{ b bytes.Buffer }

func newResponse(action, requestID string) *xw {
	w := &xw{}
	w.b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	w.b.WriteString("<" + action + `Response xmlns="` + ec2Namespace + `">`)
	w.elem("requestId", requestID)
	return w
}

func (w *xw) finish(action string) []byte {
	w.b.WriteString("</" + action + "Response>")
	return w.b.Bytes()
}

func (w *xw) open(name string)  { w.b.WriteString("<" + name + ">") }
func (w *xw) close(name string) { w.b.WriteString("</" + name + ">") }

func (w *xw) elem(name, value string) {
	w.b.WriteString("<" + name + ">")
	_ = xml.EscapeText(&w.b, []byte(value))
	w.b.WriteString("</" + name + ">")
}

// opt writes the element only when value is not empty.
func (w *xw) opt(name, value string) {
	if value != "" {
		w.elem(name, value)
	}
}

func (w *xw) intElem(name string, v int64) { w.elem(name, strconv.FormatInt(v, 10)) }
func (w *xw) boolElem(name string, v bool) { w.elem(name, strconv.FormatBool(v)) }
func (w *xw) timeElem(name string, t time.Time) {
	w.elem(name, t.UTC().Format("2006-01-02T15:04:05.000Z"))
}

func (w *xw) tagSet(tags map[string]string) {
	w.open("tagSet")
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		w.open("item")
		w.elem("key", k)
		w.elem("value", tags[k])
		w.close("item")
	}
	w.close("tagSet")
}

// apiError is an EC2 error answer.
type apiError struct {
	Status  int
	Code    string
	Message string
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

func errorXML(e *apiError, requestID string) []byte {
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n<Response><Errors><Error><Code>")
	_ = xml.EscapeText(&b, []byte(e.Code))
	b.WriteString("</Code><Message>")
	_ = xml.EscapeText(&b, []byte(e.Message))
	b.WriteString("</Message></Error></Errors><RequestID>")
	_ = xml.EscapeText(&b, []byte(requestID))
	b.WriteString("</RequestID></Response>")
	return b.Bytes()
}

func badParam(format string) *apiError {
	return &apiError{Status: 400, Code: "InvalidParameterValue", Message: format}
}

func missingParam(name string) *apiError {
	return &apiError{Status: 400, Code: "MissingParameter", Message: "The request must contain the parameter " + name}
}

// page slices a result list by the NextToken (an offset) and MaxResults.
func page[T any](p *params, items []T, defMax int) ([]T, string, *apiError) {
	start := 0
	if tok := p.str("NextToken"); tok != "" {
		n, err := strconv.Atoi(tok)
		if err != nil || n < 0 || n > len(items) {
			return nil, "", &apiError{Status: 400, Code: "InvalidNextToken", Message: "The specified NextToken is not valid"}
		}
		start = n
	}
	max := p.int("MaxResults", defMax)
	if max <= 0 {
		max = defMax
	}
	end := start + max
	if end >= len(items) {
		return items[start:], "", nil
	}
	return items[start:end], strconv.Itoa(end), nil
}
