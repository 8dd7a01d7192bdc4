package e2e

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// rtcLeaveDelay is the delay of the call members' delayed leave events in the MatrixRTC test.
const rtcLeaveDelay = 5 * time.Second

// rtcClient is one node process running jssdk/rtc.mjs for one user.
type rtcClient struct {
	cmd   *exec.Cmd
	lines chan string // its output, line by line; closed when it ends
}

// startRTCClient runs jssdk/rtc.mjs for c in roomID, with peer as the other member.
func startRTCClient(t *testing.T, node string, s *Server, c *Client, roomID, peer string, waitPeerGone bool) *rtcClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, node, "rtc.mjs")
	cmd.Dir = jssdkDir
	cmd.Env = append(os.Environ(), "LATTICE_URL="+s.URL, "RTC_USER="+c.UserID, "RTC_TOKEN="+c.Token, "RTC_DEVICE="+c.DeviceID,
		"RTC_ROOM="+roomID, "RTC_PEER="+peer, "RTC_LEAVE_DELAY_MS="+strconv.FormatInt(rtcLeaveDelay.Milliseconds(), 10))
	if waitPeerGone {
		cmd.Env = append(cmd.Env, "RTC_WAIT_PEER_GONE=1")
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout // the SDK's warnings too, in order
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &rtcClient{cmd: cmd, lines: make(chan string, 1000)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			t.Logf("%s: %s", c.UserID, sc.Text())
			r.lines <- sc.Text()
		}
		close(r.lines)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return r
}

// expect waits until the process prints a line containing want, failing on "FAIL:", on its
// end or after timeout.
func (r *rtcClient) expect(t *testing.T, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case line, ok := <-r.lines:
			if !ok {
				t.Fatalf("rtc.mjs ended before %q", want)
			}
			if strings.Contains(line, "FAIL:") {
				t.Fatalf("rtc.mjs: %s", line)
			}
			if strings.Contains(line, want) {
				return
			}
		case <-deadline:
			t.Fatalf("rtc.mjs did not print %q within %v", want, timeout)
		}
	}
}

// TestMatrixRTCDelayedLeave runs matrix-js-sdk's MatrixRTCSession for alice and bob in a
// room, as Element Call does: the transports come from /rtc/transports, each client
// schedules a delayed leave event and restarts it while alive. alice's client is then
// killed without leaving; bob's client sees her call membership end when her delayed leave
// event is sent.
func TestMatrixRTCDelayedLeave(t *testing.T) {
	node := requireNodeModules(t)
	s, _, _ := startRTCServer(t)
	alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
	const memberType = "org.matrix.msc3401.call.member"
	roomID := alice.CreateRoom(map[string]any{"preset": "public_chat",
		"power_level_content_override": map[string]any{"events": map[string]any{memberType: 0}}})
	join(bob, roomID)

	a := startRTCClient(t, node, s, alice, roomID, bob.UserID, false)
	b := startRTCClient(t, node, s, bob, roomID, alice.UserID, true)
	a.expect(t, "BOTH", 60*time.Second)
	b.expect(t, "BOTH", 60*time.Second)

	// alice's client dies: no leave event, no more restarts of her delayed leave.
	if err := a.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	b.expect(t, "PEER_GONE", rtcLeaveDelay+15*time.Second)
	gone := time.Since(killed)
	t.Logf("alice's membership ended %v after her client was killed (delayed leave %v)", gone.Round(time.Millisecond), rtcLeaveDelay)
	if gone < rtcLeaveDelay-2*time.Second {
		t.Errorf("alice's membership ended after %v, sooner than her delayed leave's %v allows", gone, rtcLeaveDelay)
	}
	if err := b.cmd.Wait(); err != nil {
		t.Errorf("bob's rtc.mjs: %v", err)
	}

	// What ended it: alice's delayed leave, sent by the server when its time came.
	var sent []event
	for _, d := range delayed(alice, "finalised") {
		if str(d, "type") == memberType && str(d, "outcome") == "send" && str(d, "reason") == "delay" {
			sent = append(sent, d)
		}
	}
	if len(sent) != 1 {
		t.Errorf("alice's delayed leave events sent on timeout: %v, want one", sent)
	}
}
