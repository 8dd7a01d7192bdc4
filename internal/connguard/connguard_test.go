package connguard

import (
	"net"
	"testing"
)

type fakeConn struct {
	net.Conn
	remote net.Addr
}

func (c fakeConn) RemoteAddr() net.Addr { return c.remote }

// TestAddrOf: IPv4 clients count by address, IPv6 clients by their /64 (one client usually
// holds a whole /64), and an IPv4-mapped address as the IPv4 address.
func TestAddrOf(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.2:5555":             "127.0.0.2",
		"[2001:db8:1:2:3:4:5:6]:443": "2001:db8:1:2::/64",
		"[2001:db8:1:2:ffff::1]:443": "2001:db8:1:2::/64",
		"[::ffff:10.0.0.1]:80":       "10.0.0.1",
	} {
		addr, err := net.ResolveTCPAddr("tcp", in)
		if err != nil {
			t.Fatal(err)
		}
		if got := addrOf(fakeConn{remote: addr}); got != want {
			t.Errorf("addrOf(%s) = %s, want %s", in, got, want)
		}
	}
}

// TestCapPerAddress: past the cap an address's new connections are refused; another address
// is not affected, and a released slot is free again.
func TestCapPerAddress(t *testing.T) {
	g := New(Config{MaxPendingPerAddress: 2})
	conn := func(addr string) net.Conn {
		a, _ := net.ResolveTCPAddr("tcp", addr)
		return fakeConn{remote: a}
	}
	a1, a2, a3 := conn("127.0.0.2:1"), conn("127.0.0.2:2"), conn("127.0.0.2:3")
	if !g.admit(a1) || !g.admit(a2) {
		t.Fatal("connections under the cap refused")
	}
	if g.admit(a3) {
		t.Fatal("a third pending connection of one address admitted with a cap of 2")
	}
	if !g.admit(conn("127.0.0.3:1")) {
		t.Fatal("another address refused")
	}
	g.conns[a1].release()
	if !g.admit(a3) {
		t.Fatal("a released slot was not free again")
	}
}
