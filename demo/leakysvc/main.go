// Command leakysvc is gotrace's demo: a small HTTP service with the classic leaks of Go
// services, and a built-in client that keeps it busy.
//
//   - /report starts a goroutine per request that waits on a channel nobody closes when the
//     client gives up (a goroutine leak that grows with traffic);
//   - /session caches every session forever (a heap that only grows);
//   - /upload sets a finalizer on each buffer as a "destructor" (finalizer abuse).
//
// Run it, then `sudo gotrace attach $(pidof leakysvc)`.
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"runtime"
	"sync"
	"time"
)

type session struct {
	id   int
	data []byte
}

var (
	mu       sync.Mutex
	sessions = map[int]*session{}
	nextID   int
)

// report leaks: the worker blocks forever on send when the handler has already returned.
func report(w http.ResponseWriter, r *http.Request) {
	result := make(chan string)
	go func() {
		time.Sleep(5 * time.Millisecond)
		result <- "done" // blocks forever once the handler timed out
	}()
	select {
	case s := <-result:
		fmt.Fprintln(w, s)
	case <-time.After(1 * time.Millisecond):
		http.Error(w, "timeout", http.StatusGatewayTimeout)
	}
}

// session leaks: sessions are cached and never evicted.
func newSession(w http.ResponseWriter, r *http.Request) {
	mu.Lock()
	nextID++
	s := &session{id: nextID, data: make([]byte, 16<<10)}
	sessions[s.id] = s
	mu.Unlock()
	fmt.Fprintln(w, s.id)
}

type buffer struct{ b []byte }

// upload abuses finalizers as destructors.
func upload(w http.ResponseWriter, r *http.Request) {
	buf := &buffer{b: make([]byte, 4<<10)}
	runtime.SetFinalizer(buf, func(b *buffer) { b.b = nil })
	n, _ := io.Copy(io.Discard, r.Body)
	fmt.Fprintln(w, n+int64(len(buf.b)))
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	rps := flag.Int("rps", 200, "requests per second the built-in client sends (0: none)")
	flag.Parse()

	mux := http.NewServeMux()
	mux.HandleFunc("/report", report)
	mux.HandleFunc("/session", newSession)
	mux.HandleFunc("/upload", upload)
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("leakysvc pid %d listening on http://%s\n", os.Getpid(), ln.Addr())
	if *rps > 0 {
		go load("http://"+ln.Addr().String(), *rps)
	}
	log.Fatal(http.Serve(ln, mux))
}

// load plays the clients: a steady mix of the three endpoints.
func load(base string, rps int) {
	client := &http.Client{Timeout: 2 * time.Second}
	paths := []string{"/report", "/session", "/upload", "/report"}
	tick := time.NewTicker(time.Second / time.Duration(rps))
	for i := 0; ; i++ {
		<-tick.C
		resp, err := client.Get(base + paths[i%len(paths)])
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
}
