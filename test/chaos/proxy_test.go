package chaos

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingProxy is a reverse proxy in front of Vault that counts the
// requests (and 429 answers) for paths under prefix: Vault does not audit
// the requests its rate-limit quota refuses, so this is where a retry storm
// would show.
type countingProxy struct {
	URL               string
	requests, limited atomic.Int64
}

func newCountingProxy(t *testing.T, target, prefix string) *countingProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &countingProxy{}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ModifyResponse = func(r *http.Response) error {
		if strings.HasPrefix(r.Request.URL.Path, prefix) && r.StatusCode == http.StatusTooManyRequests {
			p.limited.Add(1)
		}
		return nil
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, prefix) {
			p.requests.Add(1)
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	p.URL = srv.URL
	return p
}

// slowProxy is a TCP proxy in front of Vault that holds every chunk of
// Vault's answers for delay before passing it on: a congested link or an
// overloaded Vault, as the provider sees it.
type slowProxy struct {
	Addr  string
	delay atomic.Int64 // nanoseconds
	l     net.Listener
	done  chan struct{} // closed by close: held chunks are dropped
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns []net.Conn
}

func newSlowProxy(t *testing.T, target string) *slowProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	l, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &slowProxy{Addr: "http://" + l.Addr().String(), l: l, done: make(chan struct{})}
	p.wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", u.Host)
			if err != nil {
				_ = c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			p.wg.Go(func() { _, _ = io.Copy(up, c); _ = up.Close() })
			p.wg.Go(func() { p.copySlow(c, up); _ = c.Close() })
		}
	})
	t.Cleanup(p.close)
	return p
}

// copySlow copies from src to dst, sleeping the current delay before each
// chunk.
func (p *slowProxy) copySlow(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			select {
			case <-time.After(time.Duration(p.delay.Load())):
			case <-p.done:
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *slowProxy) setDelay(d time.Duration) { p.delay.Store(int64(d)) }

func (p *slowProxy) close() {
	close(p.done)
	_ = p.l.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
