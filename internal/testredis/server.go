package testredis

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"
)

// Server is a private redis-server, without persistence, that a test can
// kill and start again on the same port: an outage that loses every key.
type Server struct {
	t    testing.TB
	bin  string
	port int
	cmd  *exec.Cmd
	// Addr is the server's host:port, the same across restarts.
	Addr string
}

// StartServer runs a redis-server on a free loopback port until the test
// ends, skipping the test as Start does without redis-server.
func StartServer(t testing.TB) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("redis-server not on PATH in CI: %v", err)
		}
		t.Skip("redis-server not on PATH; install the Debian package redis-server (make deps)")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{t: t, bin: bin, port: l.Addr().(*net.TCPAddr).Port}
	l.Close()
	s.Addr = fmt.Sprintf("127.0.0.1:%d", s.port)
	t.Cleanup(s.Kill)
	s.Restart()
	return s
}

// Kill stops the server with SIGKILL and waits for it to exit. Killing a
// stopped server does nothing.
func (s *Server) Kill() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// Restart starts the server (again, empty) on its port and waits until it
// accepts connections.
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	cmd := exec.Command(s.bin, "--port", fmt.Sprint(s.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.cmd = cmd
	for deadline := time.Now().Add(10 * time.Second); ; {
		if c, err := net.Dial("tcp", s.Addr); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("redis-server did not listen on %s", s.Addr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
