package main

// Mode fanout: push from a backend to many subscribers, for stickyws.v1 and for socket.io.
//
//	fanout -client stickyws|socketio -n N -topics T -reps R -rate P -duration S -- PUBLISHER...
//
// Opens N connections; each subscribes to topic "fan" and to "t-<i mod T>" (stickyws.v1: subscribe
// frames and their acks; socket.io: `42<id>["subscribe",topic]` and its `43<id>` ack). PUBLISHER is
// started as a child (so it runs on the generator's core): it reads "PHASE TOPIC" lines on stdin and
// publishes {"p":PHASE,"ts":<wall clock, microseconds>} to TOPIC. Reports, one per stdin line:
//
//	ready    connections open and subscribed
//	phase a  R publications to "fan", one at a time: each waits until all N subscribers have it
//	         (or -timeout); fan-out time = last receive - publish ts; deliveries/s = N / its median;
//	         gen_burst_cores: the generator's CPU while publications were in flight, over that time
//	phase b  P publications/s for S seconds, round robin over the T topics; then waits for the
//	         deliveries still in flight (bounded); deliveries/s and publish-to-receive p50/p99
//	done     after stdin closes: the publisher's CPU and its own JSON report (its last stdout line,
//	         if any); connections closed
import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

type subscriber struct {
	c   *websocket.Conn
	mu  sync.Mutex
	lat [2][]float64 // publish-to-receive ms, phase a and b
}

type fanState struct {
	got      [2]int64
	lastRecv int64 // unix microseconds of the latest receive (max over readers)
	pubTs    int64 // ts of the latest phase-a publication received
	dropped  int64
}

// dialSocketIO opens a socket.io connection over the websocket transport: engine.io open packet,
// then the CONNECT packet with the token as auth, until the server's CONNECT answer.
func (g *gen) dialSocketIO() (*websocket.Conn, error) {
	d := *g.dialer
	d.Subprotocols = nil
	c, resp, err := d.Dial(g.base, http.Header{})
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("handshake status %d", resp.StatusCode)
		}
		return nil, err
	}
	_ = c.SetReadDeadline(time.Now().Add(g.timeout))
	_, data, err := c.ReadMessage()
	if err != nil || len(data) == 0 || data[0] != '0' {
		c.Close()
		return nil, fmt.Errorf("no engine.io open packet: %v %.80s", err, data)
	}
	_ = c.SetWriteDeadline(time.Now().Add(g.timeout))
	if err := c.WriteMessage(websocket.TextMessage, []byte(`40{"token":"`+g.token()+`"}`)); err != nil {
		c.Close()
		return nil, err
	}
	for {
		_, data, err = c.ReadMessage()
		if err != nil {
			c.Close()
			return nil, err
		}
		s := string(data)
		if s == "2" { // an early engine.io ping
			_ = c.WriteMessage(websocket.TextMessage, []byte("3"))
			continue
		}
		if strings.HasPrefix(s, "40") {
			break
		}
		c.Close()
		return nil, fmt.Errorf("socket.io connect refused: %.80s", s)
	}
	_ = c.SetReadDeadline(time.Time{})
	return c, nil
}

// awaitFrame reads until a frame matches (answering engine.io pings on the way); returns that frame.
func awaitFrame(c *websocket.Conn, timeout time.Duration, match func(string) bool, sio bool) (string, error) {
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	defer c.SetReadDeadline(time.Time{})
	for {
		_, data, err := c.ReadMessage()
		if err != nil {
			return "", err
		}
		s := string(data)
		if sio && s == "2" {
			_ = c.WriteMessage(websocket.TextMessage, []byte("3"))
			continue
		}
		if match(s) {
			return s, nil
		}
	}
}

// subscribe sends one subscribe and waits for its ack; an error frame (or error ack) is an error.
func subscribe(c *websocket.Conn, sio bool, id int, topic string, timeout time.Duration) error {
	_ = c.SetWriteDeadline(time.Now().Add(timeout))
	var frame, want string
	if sio {
		frame = "42" + strconv.Itoa(id) + `["subscribe","` + topic + `"]`
		want = "43" + strconv.Itoa(id) + "["
	} else {
		frame = `{"type":"subscribe","id":` + strconv.Itoa(id) + `,"topic":"` + topic + `"}`
		want = `"type":"ack","id":` + strconv.Itoa(id) + `,`
	}
	if err := c.WriteMessage(websocket.TextMessage, []byte(frame)); err != nil {
		return err
	}
	got, err := awaitFrame(c, timeout, func(s string) bool {
		if sio {
			return strings.HasPrefix(s, want) || strings.HasPrefix(s, "44")
		}
		return strings.Contains(s, want) || strings.Contains(s, `"type":"error"`)
	}, sio)
	if err != nil {
		return err
	}
	if strings.Contains(got, `"error"`) || strings.HasPrefix(got, "44") {
		return fmt.Errorf("subscribe %s refused: %.120s", topic, got)
	}
	return nil
}

// parsePub finds the phase and the publish timestamp in a publication frame of either protocol.
func parsePub(s []byte) (phase int, ts int64, ok bool) {
	i := bytes.Index(s, []byte(`"ts":`))
	if i < 0 {
		return 0, 0, false
	}
	j := i + 5
	for j < len(s) && s[j] == ' ' {
		j++
	}
	k := j
	for k < len(s) && s[k] >= '0' && s[k] <= '9' {
		k++
	}
	v, err := strconv.ParseInt(string(s[j:k]), 10, 64)
	if err != nil {
		return 0, 0, false
	}
	p := bytes.Index(s, []byte(`"p":"`))
	if p < 0 || p+5 >= len(s) {
		return 0, 0, false
	}
	if s[p+5] == 'b' {
		phase = 1
	}
	return phase, v, true
}

func atomicMax(addr *int64, v int64) {
	for {
		old := atomic.LoadInt64(addr)
		if v <= old || atomic.CompareAndSwapInt64(addr, old, v) {
			return
		}
	}
}

func (s *subscriber) read(st *fanState, sio bool) {
	for {
		_, data, err := s.c.ReadMessage()
		if err != nil {
			atomic.AddInt64(&st.dropped, 1)
			return
		}
		now := time.Now().UnixMicro()
		if sio && len(data) == 1 && data[0] == '2' {
			_ = s.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			_ = s.c.WriteMessage(websocket.TextMessage, []byte("3"))
			continue
		}
		phase, ts, ok := parsePub(data)
		if !ok {
			continue
		}
		s.mu.Lock()
		s.lat[phase] = append(s.lat[phase], float64(now-ts)/1000)
		s.mu.Unlock()
		atomicMax(&st.lastRecv, now)
		if phase == 0 {
			atomic.StoreInt64(&st.pubTs, ts)
		}
		atomic.AddInt64(&st.got[phase], 1)
	}
}

func waitCount(addr *int64, want int64, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for atomic.LoadInt64(addr) < want {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(200 * time.Microsecond)
	}
	return true
}

func lags(subs []*subscriber, phase int) []float64 {
	var all []float64
	for _, s := range subs {
		s.mu.Lock()
		all = append(all, s.lat[phase]...)
		s.lat[phase] = nil
		s.mu.Unlock()
	}
	sort.Float64s(all)
	return all
}

// median of v (the mean of the middle two for an even count; 0 for none).
func median(v []float64) float64 {
	c := append([]float64(nil), v...)
	sort.Float64s(c)
	n := len(c)
	switch {
	case n == 0:
		return 0
	case n%2 == 1:
		return c[n/2]
	default:
		return (c[n/2-1] + c[n/2]) / 2
	}
}

func runFanout(g *gen, sio bool, n, topics, conc, reps int, rate float64, dur time.Duration, pubCmd []string) {
	if len(pubCmd) == 0 {
		fmt.Fprintln(os.Stderr, "loadgen: fanout needs the publisher command after --")
		os.Exit(2)
	}
	pub := exec.Command(pubCmd[0], pubCmd[1:]...)
	pub.Stderr = os.Stderr
	var pubOut bytes.Buffer
	pub.Stdout = &pubOut
	pubIn, err := pub.StdinPipe()
	if err != nil || pub.Start() != nil {
		fmt.Fprintln(os.Stderr, "loadgen: cannot start the publisher:", pubCmd[0])
		os.Exit(2)
	}
	pubW := bufio.NewWriter(pubIn)
	in := bufio.NewScanner(os.Stdin)
	var errs errCount
	st := &fanState{}
	perTopic := make([]int64, topics)
	subs := make([]*subscriber, 0, n)
	var mu sync.Mutex
	var wg sync.WaitGroup
	var left, seq int64 = int64(n), 0
	cpu0, t0 := cpuSeconds(), time.Now()
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			failures := 0
			for atomic.AddInt64(&left, -1) >= 0 {
				var c *websocket.Conn
				var err error
				if sio {
					c, err = g.dialSocketIO()
				} else {
					c, err = g.dial()
				}
				k := -1
				if err == nil {
					k = int(atomic.AddInt64(&seq, 1)-1) % topics
					err = subscribe(c, sio, 1, "fan", g.timeout)
					if err == nil {
						err = subscribe(c, sio, 2, "t-"+strconv.Itoa(k), g.timeout)
					}
					if err != nil {
						c.Close()
					}
				}
				if err != nil {
					errs.add(err)
					failures++
					if failures > 200 { // bounded: a worker gives up after 200 failed attempts
						return
					}
					atomic.AddInt64(&left, 1)
					time.Sleep(50 * time.Millisecond)
					continue
				}
				s := &subscriber{c: c}
				mu.Lock()
				subs = append(subs, s)
				perTopic[k]++
				mu.Unlock()
				go s.read(st, sio)
			}
		}()
	}
	wg.Wait()
	open := int64(len(subs))
	emit(report{"mode": "fanout", "phase": "ready", "open": open, "opened_in_s": time.Since(t0).Seconds(),
		"errors": errs.n, "last_error": errs.last, "gen_cpu_s": cpuSeconds() - cpu0})
	send := func(line string) {
		_, _ = pubW.WriteString(line + "\n")
	}

	// Phase a: one publication at a time to all subscribers.
	if in.Scan() {
		cpu0, t0 = cpuSeconds(), time.Now()
		var fanMs []float64
		missing := int64(0)
		burstCPU, burstWall := 0.0, 0.0
		for r := 0; r < reps; r++ {
			base := atomic.LoadInt64(&st.got[0])
			atomic.StoreInt64(&st.lastRecv, 0)
			c0, w0 := cpuSeconds(), time.Now()
			send("a fan")
			_ = pubW.Flush()
			if !waitCount(&st.got[0], base+open, g.timeout) {
				missing += base + open - atomic.LoadInt64(&st.got[0])
				continue
			}
			burstCPU += cpuSeconds() - c0
			burstWall += time.Since(w0).Seconds()
			ms := float64(atomic.LoadInt64(&st.lastRecv)-atomic.LoadInt64(&st.pubTs)) / 1000
			fanMs = append(fanMs, ms)
			time.Sleep(20 * time.Millisecond)
		}
		wall := time.Since(t0).Seconds()
		rate := 0.0 // every publication timed out: no fan-out time to divide by
		if len(fanMs) > 0 {
			rate = float64(open) / (median(fanMs) / 1000)
		}
		all := lags(subs, 0)
		cpu := cpuSeconds() - cpu0
		emit(report{"mode": "fanout", "phase": "a", "subscribers": open, "reps": reps, "fanout_ms": fanMs,
			"fanout_ms_median": median(fanMs), "deliveries_per_s": rate, "deliveries": len(all),
			"missing": missing, "p50_ms": percentile(all, 0.5), "p99_ms": percentile(all, 0.99),
			"max_ms": percentile(all, 1.0), "wall_s": wall, "dropped": atomic.LoadInt64(&st.dropped),
			"gen_cpu_s": cpu, "gen_cpu_cores": cpu / wall, "gen_burst_cores": burstCPU / burstWall})
	}

	// Phase b: a steady stream, round robin over the topics.
	if in.Scan() {
		cpu0, t0 = cpuSeconds(), time.Now()
		base := atomic.LoadInt64(&st.got[1])
		expected := base
		interval := time.Duration(float64(time.Second) / rate)
		next := t0
		deadline := t0.Add(dur)
		sent, late := 0, 0
		for next.Before(deadline) {
			if d := time.Until(next); d > 0 {
				_ = pubW.Flush()
				time.Sleep(d)
			} else if d < -10*time.Millisecond {
				late++
			}
			k := sent % topics
			send("b t-" + strconv.Itoa(k))
			expected += perTopic[k]
			sent++
			next = next.Add(interval)
		}
		_ = pubW.Flush()
		sendWall := time.Since(t0).Seconds()
		complete := waitCount(&st.got[1], expected, 2*g.timeout)
		got := atomic.LoadInt64(&st.got[1]) - base
		span := float64(atomic.LoadInt64(&st.lastRecv)-t0.UnixMicro()) / 1e6
		wall := time.Since(t0).Seconds()
		all := lags(subs, 1)
		cpu := cpuSeconds() - cpu0
		emit(report{"mode": "fanout", "phase": "b", "topics": topics, "target_rate_per_s": rate,
			"publications": sent, "late_sends": late, "send_s": sendWall, "deliveries": got,
			"expected": expected - base, "complete": complete, "deliveries_per_s": float64(got) / span,
			"span_s": span, "p50_ms": percentile(all, 0.5), "p99_ms": percentile(all, 0.99),
			"max_ms": percentile(all, 1.0), "wall_s": wall, "dropped": atomic.LoadInt64(&st.dropped),
			"gen_cpu_s": cpu, "gen_cpu_cores": cpu / wall})
	}

	in.Scan()
	_ = pubW.Flush()
	_ = pubIn.Close()
	waited := make(chan error, 1)
	go func() { waited <- pub.Wait() }()
	var pubErr error
	select {
	case pubErr = <-waited:
	case <-time.After(2 * g.timeout):
		_ = pub.Process.Kill()
		pubErr = errors.New("publisher did not exit; killed")
		<-waited
	}
	pubCPU := 0.0
	if pub.ProcessState != nil {
		pubCPU = (pub.ProcessState.UserTime() + pub.ProcessState.SystemTime()).Seconds()
	}
	for _, s := range subs {
		_ = s.c.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		s.c.Close()
	}
	last := ""
	if pubErr != nil {
		last = pubErr.Error()
	}
	var pubReport interface{}
	if lines := strings.Split(strings.TrimSpace(pubOut.String()), "\n"); len(lines) > 0 {
		_ = json.Unmarshal([]byte(lines[len(lines)-1]), &pubReport)
	}
	emit(report{"mode": "fanout", "phase": "done", "closed": len(subs), "publisher_cpu_s": pubCPU,
		"publisher_error": last, "publisher": pubReport})
}
