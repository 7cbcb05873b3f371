package disruption
import ("testing";"time")
func TestDbg(t *testing.T){
	s,_ := BenchCluster(types(t), 1000, 1000)
	st := time.Now(); c0 := cpuTime()
	p := Decide(s, t0, Options{})
	t.Logf("wall %s cpu %s decisions %d skipped %d", time.Since(st), cpuTime()-c0, len(p.Decisions), len(p.Skipped))
	codes := map[string]int{}
	for _, sk := range p.Skipped { codes[sk.Code]++ }
	n:=0; for _, d := range p.Decisions { n += len(d.Nodes) }
	t.Logf("%v nodes %d", codes, n)
}
