package redis_test

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/kvtrack/kvtrack/internal/testnet"
)

// server is a redis-server process owned by one test: loopback only, its own
// temporary directory, no persistence. It is stopped in t.Cleanup.
type server struct {
	t    testing.TB
	bin  string
	dir  string
	port int
	cmd  *exec.Cmd
	exit chan struct{} // closed when cmd has exited
}

// startServer starts a redis-server on a free loopback port. Without
// redis-server on PATH it skips, unless CI is set: there it fails.
func startServer(t testing.TB) *server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("redis-server not found on PATH in CI (%v); .ci/run installs the Debian package redis-server", err)
		}
		t.Skip("redis-server not found on PATH: install it with `make deps` (Debian package redis-server) to run the Redis index tests")
	}
	s := &server{t: t, bin: bin, dir: t.TempDir()}
	// A free port can be taken between choosing and binding it: try again.
	for attempt := 0; ; attempt++ {
		s.port = freePort(t)
		if err := s.start(); err == nil {
			break
		} else if attempt == 4 {
			t.Fatalf("redis-server did not start: %v\n%s", err, s.log())
		}
	}
	t.Cleanup(s.stop)
	return s
}

func (s *server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

func (s *server) start() error {
	s.cmd = exec.Command(s.bin,
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--dir", s.dir,
		"--save", "",
		"--appendonly", "no",
		"--logfile", filepath.Join(s.dir, "redis.log"),
	)
	if err := s.cmd.Start(); err != nil {
		return err
	}
	exit := make(chan struct{})
	s.exit = exit
	go func(cmd *exec.Cmd) { _ = cmd.Wait(); close(exit) }(s.cmd)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exit:
			return &exec.ExitError{ProcessState: s.cmd.ProcessState}
		default:
		}
		if ping(s.Addr()) {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.kill()
	return os.ErrDeadlineExceeded
}

// kill stops the server abruptly, as a crash or a network partition would.
func (s *server) kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.exit
	s.cmd = nil
}

// restart starts a fresh, empty server on the same port.
func (s *server) restart() {
	s.t.Helper()
	s.kill()
	var err error
	for range 50 { // the old socket may linger briefly
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("redis-server did not restart on port %d: %v\n%s", s.port, err, s.log())
}

func (s *server) stop() { s.kill() }

func (s *server) log() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
	return string(b)
}

func freePort(t testing.TB) int { return testnet.FreePort(t) }

// ping sends an inline PING and waits for +PONG.
func ping(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && line == "+PONG\r\n"
}
