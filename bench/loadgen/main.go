// Command loadgen is the stickyws benchmark's load generator: a compiled WebSocket client that
// drives the reference server and the Node peer alike (gorilla/websocket, Debian package).
//
// Modes (one JSON object on stdout per report; progress and errors on stderr):
//
//	handshake  -conc C -duration S    connect (?token=), wait for the "connected" frame, close; loop
//	echo       -conc C -duration S    C connections, each sends {"type":"send","id":N,"data":...}
//	                                  and waits for its "ack" before the next (closed loop)
//	latency    -conc C -rate R -duration S   the same frames at a fixed total rate R/s; p50/p99
//	idle       -stages 1000,10000,... -conc C   open connections up to each stage, print a report,
//	                                  wait for a line on stdin, go on; after the last: close all
//	fanout     -client stickyws|socketio -n N -topics T ... -- PUBLISHER   subscribers and a
//	                                  backend publishing to them (fanout.go has the details)
//
// Every report carries the generator's own CPU time (getrusage), so its load can be checked.
// Every loop is bounded by -duration or by the stage counts; every network wait by -timeout.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

type report map[string]interface{}

func emit(r report) {
	b, _ := json.Marshal(r)
	fmt.Println(string(b))
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
}

func loadTokens(path string) []string {
	f, err := os.Open(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen: cannot read tokens:", err)
		os.Exit(2)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 64*1024)
	for sc.Scan() {
		if t := strings.TrimSpace(sc.Text()); t != "" {
			out = append(out, t)
		}
	}
	if len(out) == 0 {
		fmt.Fprintln(os.Stderr, "loadgen: token file is empty")
		os.Exit(2)
	}
	return out
}

type gen struct {
	base    string
	tokens  []string
	proto   string
	timeout time.Duration
	dialer  *websocket.Dialer
	next    uint64
}

func (g *gen) token() string {
	i := atomic.AddUint64(&g.next, 1) - 1
	return g.tokens[i%uint64(len(g.tokens))]
}

// dial connects with the next token and returns once the first frame ("connected") has arrived.
func (g *gen) dial() (*websocket.Conn, error) {
	u, _ := url.Parse(g.base)
	q := u.Query()
	q.Set("token", g.token())
	u.RawQuery = q.Encode()
	c, resp, err := g.dialer.Dial(u.String(), http.Header{})
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("handshake status %d", resp.StatusCode)
		}
		return nil, err
	}
	_ = c.SetReadDeadline(time.Now().Add(g.timeout))
	_, data, err := c.ReadMessage()
	if err != nil {
		c.Close()
		return nil, err
	}
	if !strings.Contains(string(data), `"type":"connected"`) {
		c.Close()
		return nil, fmt.Errorf("first frame is not connected: %.80s", data)
	}
	_ = c.SetReadDeadline(time.Time{})
	return c, nil
}

// closeConn runs the close handshake: send 1000, read until the peer's close frame (bounded).
func (g *gen) closeConn(c *websocket.Conn) {
	_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""),
		time.Now().Add(g.timeout))
	_ = c.SetReadDeadline(time.Now().Add(g.timeout))
	for {
		if _, _, err := c.ReadMessage(); err != nil {
			break
		}
	}
	c.Close()
}

type errCount struct {
	mu   sync.Mutex
	n    int
	last string
}

func (e *errCount) add(err error) {
	e.mu.Lock()
	e.n++
	e.last = err.Error()
	e.mu.Unlock()
}

func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p * float64(len(sorted)-1))
	return sorted[i]
}

func runHandshake(g *gen, conc int, dur time.Duration) {
	var done int64
	var errs errCount
	lat := make([][]float64, conc)
	cpu0, t0 := cpuSeconds(), time.Now()
	deadline := t0.Add(dur)
	var wg sync.WaitGroup
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for time.Now().Before(deadline) {
				s := time.Now()
				c, err := g.dial()
				if err != nil {
					errs.add(err)
					time.Sleep(10 * time.Millisecond)
					continue
				}
				lat[w] = append(lat[w], float64(time.Since(s).Microseconds())/1000)
				g.closeConn(c)
				atomic.AddInt64(&done, 1)
			}
		}(w)
	}
	wg.Wait()
	wall := time.Since(t0).Seconds()
	var all []float64
	for _, l := range lat {
		all = append(all, l...)
	}
	sort.Float64s(all)
	emit(report{"mode": "handshake", "conc": conc, "completed": done, "wall_s": wall,
		"rate_per_s": float64(done) / wall, "errors": errs.n, "last_error": errs.last,
		"connect_p50_ms": percentile(all, 0.5), "connect_p99_ms": percentile(all, 0.99),
		"gen_cpu_s": cpuSeconds() - cpu0, "gen_cpu_cores": (cpuSeconds() - cpu0) / wall})
}

// roundTrip sends message id and reads until its ack (message frames in between are counted).
func roundTrip(c *websocket.Conn, id int, timeout time.Duration) error {
	frame := `{"type":"send","id":` + strconv.Itoa(id) + `,"data":{"n":` + strconv.Itoa(id) + `,"pad":"0123456789abcdef"}}`
	_ = c.SetWriteDeadline(time.Now().Add(timeout))
	if err := c.WriteMessage(websocket.TextMessage, []byte(frame)); err != nil {
		return err
	}
	want := `"type":"ack","id":` + strconv.Itoa(id)
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	for {
		_, data, err := c.ReadMessage()
		if err != nil {
			return err
		}
		if strings.Contains(string(data), want) {
			return nil
		}
	}
}

func openMany(g *gen, n, conc int, errs *errCount) []*websocket.Conn {
	conns := make([]*websocket.Conn, 0, n)
	var mu sync.Mutex
	var wg sync.WaitGroup
	var left int64 = int64(n)
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			failures := 0
			for atomic.AddInt64(&left, -1) >= 0 {
				c, err := g.dial()
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
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return conns
}

func runEcho(g *gen, conc int, dur time.Duration) {
	var errs errCount
	conns := openMany(g, conc, conc, &errs)
	var done int64
	cpu0, t0 := cpuSeconds(), time.Now()
	deadline := t0.Add(dur)
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func(c *websocket.Conn) {
			defer wg.Done()
			for id := 1; time.Now().Before(deadline); id++ {
				if err := roundTrip(c, id, g.timeout); err != nil {
					errs.add(err)
					return
				}
				atomic.AddInt64(&done, 1)
			}
		}(c)
	}
	wg.Wait()
	wall := time.Since(t0).Seconds()
	cpu := cpuSeconds() - cpu0
	for _, c := range conns {
		g.closeConn(c)
	}
	emit(report{"mode": "echo", "conc": len(conns), "round_trips": done, "wall_s": wall,
		"rate_per_s": float64(done) / wall, "errors": errs.n, "last_error": errs.last,
		"gen_cpu_s": cpu, "gen_cpu_cores": cpu / wall})
}

func runLatency(g *gen, conc int, rate float64, dur time.Duration) {
	var errs errCount
	conns := openMany(g, conc, conc, &errs)
	interval := time.Duration(float64(len(conns)) / rate * float64(time.Second))
	lat := make([][]float64, len(conns))
	var late int64
	cpu0, t0 := cpuSeconds(), time.Now()
	deadline := t0.Add(dur)
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func(i int, c *websocket.Conn) {
			defer wg.Done()
			// Spread the connections' send times evenly over one interval.
			next := t0.Add(time.Duration(int64(interval) * int64(i) / int64(len(conns))))
			for id := 1; next.Before(deadline); id++ {
				if d := time.Until(next); d > 0 {
					time.Sleep(d)
				} else if d < -interval {
					atomic.AddInt64(&late, 1)
				}
				if err := roundTrip(c, id, g.timeout); err != nil {
					errs.add(err)
					return
				}
				// Latency counts from the scheduled send time: a slow reply delays later sends and is charged.
				lat[i] = append(lat[i], float64(time.Since(next).Microseconds())/1000)
				next = next.Add(interval)
			}
		}(i, c)
	}
	wg.Wait()
	wall := time.Since(t0).Seconds()
	cpu := cpuSeconds() - cpu0
	for _, c := range conns {
		g.closeConn(c)
	}
	var all []float64
	for _, l := range lat {
		all = append(all, l...)
	}
	sort.Float64s(all)
	emit(report{"mode": "latency", "conc": len(conns), "target_rate_per_s": rate, "round_trips": len(all),
		"wall_s": wall, "rate_per_s": float64(len(all)) / wall, "p50_ms": percentile(all, 0.5),
		"p99_ms": percentile(all, 0.99), "max_ms": percentile(all, 1.0), "late_sends": late,
		"errors": errs.n, "last_error": errs.last, "gen_cpu_s": cpu, "gen_cpu_cores": cpu / wall})
}

func runIdle(g *gen, stages []int, conc int) {
	var errs errCount
	var all []*websocket.Conn
	var dropped int64
	in := bufio.NewScanner(os.Stdin)
	for _, target := range stages {
		cpu0, t0 := cpuSeconds(), time.Now()
		more := openMany(g, target-len(all), conc, &errs)
		for _, c := range more {
			// A reader per connection answers the server's pings (gorilla's default ping handler).
			go func(c *websocket.Conn) {
				for {
					if _, _, err := c.ReadMessage(); err != nil {
						atomic.AddInt64(&dropped, 1)
						return
					}
				}
			}(c)
		}
		all = append(all, more...)
		wall := time.Since(t0).Seconds()
		emit(report{"mode": "idle", "stage": target, "open": len(all), "opened_in_s": wall,
			"dropped": atomic.LoadInt64(&dropped), "errors": errs.n, "last_error": errs.last,
			"gen_cpu_s": cpuSeconds() - cpu0})
		if !in.Scan() {
			break
		}
	}
	for _, c := range all {
		_ = c.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(g.timeout))
		c.Close()
	}
	emit(report{"mode": "idle", "closed": len(all)})
}

func main() {
	mode := flag.String("mode", "", "handshake | echo | latency | idle | fanout")
	target := flag.String("url", "", "ws://127.0.0.1:PORT/ws")
	tokens := flag.String("tokens", "", "file with one token per line")
	proto := flag.String("subprotocol", "stickyws.v1", "subprotocol to offer")
	conc := flag.Int("conc", 100, "concurrent connections / workers")
	dur := flag.Float64("duration", 3, "seconds (handshake, echo, latency)")
	rate := flag.Float64("rate", 1000, "total messages per second (latency)")
	stages := flag.String("stages", "1000", "comma-separated open-connection counts (idle)")
	timeout := flag.Float64("timeout", 10, "seconds any single network wait may take")
	client := flag.String("client", "stickyws", "stickyws | socketio (fanout)")
	subs := flag.Int("n", 10000, "subscribers (fanout)")
	topics := flag.Int("topics", 1000, "topics of the steady stream (fanout)")
	reps := flag.Int("reps", 10, "publications to all subscribers, one at a time (fanout)")
	flag.Parse()
	if *target == "" || *tokens == "" {
		fmt.Fprintln(os.Stderr, "loadgen: -url and -tokens are required")
		os.Exit(2)
	}
	g := &gen{base: *target, tokens: loadTokens(*tokens), proto: *proto,
		timeout: time.Duration(*timeout * float64(time.Second))}
	g.dialer = &websocket.Dialer{HandshakeTimeout: g.timeout, Subprotocols: []string{*proto},
		ReadBufferSize: 1024, WriteBufferSize: 1024}
	d := time.Duration(*dur * float64(time.Second))
	switch *mode {
	case "handshake":
		runHandshake(g, *conc, d)
	case "echo":
		runEcho(g, *conc, d)
	case "latency":
		runLatency(g, *conc, *rate, d)
	case "fanout":
		if *client != "stickyws" && *client != "socketio" {
			fmt.Fprintln(os.Stderr, "loadgen: -client must be stickyws or socketio")
			os.Exit(2)
		}
		runFanout(g, *client == "socketio", *subs, *topics, *conc, *reps, *rate, d, flag.Args())
	case "idle":
		var st []int
		for _, s := range strings.Split(*stages, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || n <= 0 {
				fmt.Fprintln(os.Stderr, "loadgen: bad -stages")
				os.Exit(2)
			}
			st = append(st, n)
		}
		runIdle(g, st, *conc)
	default:
		fmt.Fprintln(os.Stderr, "loadgen: -mode must be handshake, echo, latency, idle or fanout")
		os.Exit(2)
	}
}
