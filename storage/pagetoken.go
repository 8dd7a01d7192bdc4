package storage

import (
	"fmt"
	"strconv"
	"strings"
)

// Token encodes a point in a room's history for /messages and /context (the client and admin
// APIs): "t<depth>_<nid>" for a topological position, "t<depth>_<nid>_<bound>_<depth>_<nid>"
// for a split one (Late, Bound, Early).
func (p PagePos) Token() string {
	if !p.Split() {
		return fmt.Sprintf("t%d_%d", p.Late.Depth, p.Late.NID)
	}
	return fmt.Sprintf("t%d_%d_%d_%d_%d", p.Late.Depth, p.Late.NID, p.Bound, p.Early.Depth, p.Early.NID)
}

// ParsePageToken decodes a PagePos.Token.
func ParsePageToken(s string) (PagePos, bool) {
	body, ok := strings.CutPrefix(s, "t")
	if !ok {
		return PagePos{}, false
	}
	parts := strings.Split(body, "_")
	if len(parts) != 2 && len(parts) != 5 {
		return PagePos{}, false
	}
	n := make([]int64, len(parts))
	for i, part := range parts {
		v, err := strconv.ParseInt(part, 10, 64)
		if err != nil {
			return PagePos{}, false
		}
		n[i] = v
	}
	p := Plain(TopoPos{Depth: n[0], NID: n[1]})
	if len(n) == 5 && n[2] > 0 {
		p.Bound, p.Early = n[2], TopoPos{Depth: n[3], NID: n[4]}
	}
	return p, true
}
