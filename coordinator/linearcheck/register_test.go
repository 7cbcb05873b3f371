package linearcheck

import (
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

func TestLostAckedWriteIsIllegal(t *testing.T) {
	h := NewHistory()
	h.ops = []porcupine.Operation{
		{ClientId: 0, Input: Input{Key: "n", Write: true, Value: "a"}, Call: 0, Output: "", Return: 10},
		{ClientId: 1, Input: Input{Key: "n"}, Call: 20, Output: "", Return: 30}, // a is lost
	}
	if res, _ := h.Check(time.Second); res != porcupine.Illegal {
		t.Fatalf("a read missing an acknowledged write is %v, want Illegal", res)
	}
	h.ops[1].Output = "a"
	if res, _ := h.Check(time.Second); res != porcupine.Ok {
		t.Fatalf("a read of the acknowledged write is %v, want Ok", res)
	}
}

func TestUnknownWriteMayApplyLater(t *testing.T) {
	h := NewHistory()
	h.Write(0, "n", "a", 0, false)
	h.Read(1, "n", "", h.Now())
	h.Read(1, "n", "a", h.Now())
	if res, _ := h.Check(time.Second); res != porcupine.Ok {
		t.Fatalf("an unknown-outcome write that applies late is %v, want Ok", res)
	}
	h.Read(1, "n", "", h.Now()) // but it cannot be undone
	if res, _ := h.Check(time.Second); res != porcupine.Illegal {
		t.Fatalf("a write seen then lost is %v, want Illegal", res)
	}
}
