package roomserver

import "testing"

// TestWeightedLRU: the snapshot cache drops the least recently used entries once their
// weights together pass the bound, keeps the newest even when it alone passes it, and
// accounts for replaced and forgotten entries.
func TestWeightedLRU(t *testing.T) {
	c := newWeightedLRU[int](100, 10, func(v []int) int { return len(v) })
	c.put(1, make([]int, 4))
	c.put(2, make([]int, 4))
	c.get(1) // 2 is now the least recently used
	c.put(3, make([]int, 4))
	if _, ok := c.get(2); ok {
		t.Fatal("entry 2 kept past the weight bound")
	}
	for _, k := range []int{1, 3} {
		if _, ok := c.get(k); !ok {
			t.Fatalf("entry %d dropped", k)
		}
	}
	if c.weight != 8 {
		t.Fatalf("weight %d, want 8", c.weight)
	}
	c.put(3, make([]int, 1)) // replaced: lighter
	c.forget(1)
	if c.weight != 1 {
		t.Fatalf("weight %d after replace and forget, want 1", c.weight)
	}
	c.put(4, make([]int, 50)) // heavier than the bound alone: kept, everything else dropped
	if _, ok := c.get(4); !ok || c.order.Len() != 1 || c.weight != 50 {
		t.Fatalf("heavy newest entry: kept %v, %d entries, weight %d", ok, c.order.Len(), c.weight)
	}
	// The count bound still holds without weights.
	n := newLRU[int, int](2)
	n.put(1, 1)
	n.put(2, 2)
	n.put(3, 3)
	if _, ok := n.get(1); ok || n.order.Len() != 2 {
		t.Fatal("count bound not kept")
	}
}
