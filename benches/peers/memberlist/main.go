// The benchmark's reference: one hashicorp/memberlist node (DefaultLANConfig)
// per process on loopback, counting its own traffic through a wrapping
// transport, so the suite can set its datagrams and bytes per second beside
// herd's, in the same run. Built offline in GOPATH mode from Debian's
// golang-go and golang-github-hashicorp-memberlist-dev (memberlist 0.2.2):
//
//	GOPATH=/usr/share/gocode GO111MODULE=off go build -o memberlist-peer .
//
//	memberlist-peer -name n1 -port 7001 [-join 127.0.0.1:7000,...] [-key BASE64]
//
// -key sets Config.SecretKey (16, 24 or 32 bytes: AES-128/192/256-GCM; the
// suite passes 32): every UDP packet and TCP push-pull sync is encrypted and
// authenticated, and, with GossipVerifyIncoming/Outgoing left at their
// defaults (true), unencrypted ones are neither sent nor accepted. Without
// it the node gossips in the clear (DefaultLANConfig's SecretKey: nil).
//
// Prints one JSON line per second on stdout:
//
//	{"t":1.002,"members":8,"sent_packets":..,"sent_bytes":..,"recv_packets":..,"recv_bytes":..,
//	 "stream_sent_bytes":..,"stream_recv_bytes":..}
//
// (cumulative since start; packets are UDP, stream bytes the TCP push-pull
// syncs), and one line per membership event: {"t":..,"event":"join"|"leave","node":".."}.
// SIGTERM: a graceful leave (memberlist.Leave), then exit.
package main

import (
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/memberlist"
)

var start = time.Now()

// counting wraps memberlist's own UDP/TCP transport and counts what it moves.
type counting struct {
	inner                      *memberlist.NetTransport
	packets                    chan *memberlist.Packet
	streams                    chan net.Conn
	sentPackets, sentBytes     uint64
	recvPackets, recvBytes     uint64
	streamSent, streamReceived uint64
}

func newCounting(inner *memberlist.NetTransport) *counting {
	c := &counting{inner: inner, packets: make(chan *memberlist.Packet), streams: make(chan net.Conn)}
	go func() {
		for p := range inner.PacketCh() {
			atomic.AddUint64(&c.recvPackets, 1)
			atomic.AddUint64(&c.recvBytes, uint64(len(p.Buf)))
			c.packets <- p
		}
	}()
	go func() {
		for conn := range inner.StreamCh() {
			c.streams <- &countedConn{Conn: conn, c: c}
		}
	}()
	return c
}

func (c *counting) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	return c.inner.FinalAdvertiseAddr(ip, port)
}

func (c *counting) WriteTo(b []byte, addr string) (time.Time, error) {
	atomic.AddUint64(&c.sentPackets, 1)
	atomic.AddUint64(&c.sentBytes, uint64(len(b)))
	return c.inner.WriteTo(b, addr)
}

func (c *counting) PacketCh() <-chan *memberlist.Packet { return c.packets }

func (c *counting) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	conn, err := c.inner.DialTimeout(addr, timeout)
	if err != nil {
		return nil, err
	}
	return &countedConn{Conn: conn, c: c}, nil
}

func (c *counting) StreamCh() <-chan net.Conn { return c.streams }

func (c *counting) Shutdown() error { return c.inner.Shutdown() }

// countedConn counts a TCP stream's bytes (push-pull state syncs).
type countedConn struct {
	net.Conn
	c *counting
}

func (k *countedConn) Read(b []byte) (int, error) {
	n, err := k.Conn.Read(b)
	atomic.AddUint64(&k.c.streamReceived, uint64(n))
	return n, err
}

func (k *countedConn) Write(b []byte) (int, error) {
	n, err := k.Conn.Write(b)
	atomic.AddUint64(&k.c.streamSent, uint64(n))
	return n, err
}

var out sync.Mutex

func emit(v map[string]interface{}) {
	v["t"] = time.Since(start).Seconds()
	line, _ := json.Marshal(v)
	out.Lock()
	fmt.Println(string(line))
	out.Unlock()
}

// events prints every join and leave as it happens.
type events struct{}

func (events) NotifyJoin(n *memberlist.Node)   { emit(map[string]interface{}{"event": "join", "node": n.Name}) }
func (events) NotifyLeave(n *memberlist.Node)  { emit(map[string]interface{}{"event": "leave", "node": n.Name}) }
func (events) NotifyUpdate(n *memberlist.Node) {}

func main() {
	name := flag.String("name", "", "node name")
	port := flag.Int("port", 0, "UDP and TCP port on 127.0.0.1")
	join := flag.String("join", "", "comma-separated host:port of nodes to join")
	key := flag.String("key", "", "base64 of a 16, 24 or 32-byte AES key: encrypt gossip (Config.SecretKey)")
	flag.Parse()
	if *name == "" || *port == 0 {
		fmt.Fprintln(os.Stderr, "memberlist-peer: -name and -port are required")
		os.Exit(2)
	}
	var secret []byte
	if *key != "" {
		var err error
		if secret, err = base64.StdEncoding.DecodeString(*key); err != nil {
			fmt.Fprintln(os.Stderr, "memberlist-peer: -key:", err)
			os.Exit(2)
		}
	}
	logger := log.New(io.Discard, "", 0)
	inner, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
		BindAddrs: []string{"127.0.0.1"}, BindPort: *port, Logger: logger,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "memberlist-peer:", err)
		os.Exit(1)
	}
	transport := newCounting(inner)
	cfg := memberlist.DefaultLANConfig()
	cfg.Name = *name
	cfg.BindAddr = "127.0.0.1"
	cfg.BindPort = *port
	cfg.AdvertiseAddr = "127.0.0.1"
	cfg.AdvertisePort = *port
	cfg.Transport = transport
	cfg.Logger = logger
	cfg.Events = events{}
	// memberlist.Create builds the keyring from it (and rejects a length
	// other than 16, 24 or 32); GossipVerifyIncoming and GossipVerifyOutgoing
	// stay true, as DefaultLANConfig sets them.
	cfg.SecretKey = secret
	list, err := memberlist.Create(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "memberlist-peer:", err)
		os.Exit(1)
	}
	if *join != "" {
		if _, err := list.Join(strings.Split(*join, ",")); err != nil {
			fmt.Fprintln(os.Stderr, "memberlist-peer: join:", err)
		}
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	tick := time.NewTicker(time.Second)
	for {
		select {
		case <-tick.C:
			emit(map[string]interface{}{
				"members":           list.NumMembers(),
				"sent_packets":      atomic.LoadUint64(&transport.sentPackets),
				"sent_bytes":        atomic.LoadUint64(&transport.sentBytes),
				"recv_packets":      atomic.LoadUint64(&transport.recvPackets),
				"recv_bytes":        atomic.LoadUint64(&transport.recvBytes),
				"stream_sent_bytes": atomic.LoadUint64(&transport.streamSent),
				"stream_recv_bytes": atomic.LoadUint64(&transport.streamReceived),
			})
		case <-stop:
			_ = list.Leave(time.Second)
			_ = list.Shutdown()
			return
		}
	}
}
