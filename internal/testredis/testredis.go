// Package testredis starts private redis-server processes for tests that
// need a real Redis: a standalone server, one behind TLS, or a cluster; and
// valkey-server (Options.Binary), which takes the same options.
//
// Every server binds loopback ports only, keeps its files in the test's
// temporary directory, persists nothing, and is killed when the test ends.
// Ports are chosen free and, because another process can take a port
// between the choice and the bind, a server that fails to start is started
// again on other ports.
//
// A test that needs valkey-server fails where it is missing, naming `make
// deps`; KVTRACK_SKIP_VALKEY=1 makes it skip instead.
package testredis

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kvtrack/kvtrack/internal/testnet"
)

// Start runs a redis-server on a free loopback port, without persistence,
// stopped when the test ends, and returns its host:port. Without
// redis-server on PATH it skips the test, except in CI (CI set), where it
// fails: CI installs the Debian package.
func Start(t testing.TB) string {
	t.Helper()
	return StartServer(t, Options{}).Addr()
}

// Options configure StartServer.
type Options struct {
	// Binary is the server program; default "redis-server". Set it to
	// "valkey-server" to run Valkey, which takes the same options.
	Binary string
	// Args are extra command-line options.
	Args []string
	// TLS serves TLS only, with certificates made for the test.
	TLS bool
	// ports, when set, is called with the chosen ports and returns the
	// options that bind them; default "--port <p>".
	ports  func(p []int) []string
	nports int
}

// Server is one redis-server process owned by a test.
type Server struct {
	t     testing.TB
	bin   string
	dir   string
	args  []string
	ports []int
	mk    func([]int) []string
	n     int
	certs *Certs
	cmd   *exec.Cmd
	exit  chan struct{} // closed when cmd has exited
}

// SkipValkeyEnv names the environment variable that, set to 1, lets tests
// needing valkey-server skip where it is not installed. Without it they
// fail: `make deps` installs it (on Debian 12 from bookworm-backports).
const SkipValkeyEnv = "KVTRACK_SKIP_VALKEY"

// Binary returns the path of a server program. A missing valkey-server
// fails the test, naming `make deps`, unless KVTRACK_SKIP_VALKEY=1; any
// other missing program skips it, except in CI (CI set), which installs
// redis-server and fails without it.
func Binary(t testing.TB, name string) string {
	t.Helper()
	bin, err := exec.LookPath(name)
	if err == nil {
		return bin
	}
	switch {
	case name == "valkey-server" && os.Getenv(SkipValkeyEnv) == "1":
		t.Skipf("valkey-server not on PATH (%v) and %s=1: skipping the Valkey run", err, SkipValkeyEnv)
	case name == "valkey-server":
		t.Fatalf("valkey-server not on PATH (%v): run `make deps` (hack/install-deps.sh; Debian 12: valkey-server from bookworm-backports), or set %s=1 to skip the Valkey runs", err, SkipValkeyEnv)
	case os.Getenv("CI") != "" && name == "redis-server":
		t.Fatalf("redis-server not on PATH in CI: %v", err)
	}
	t.Skipf("%s not on PATH (%v); run `make deps` to install it", name, err)
	return ""
}

// StartServer starts a server as o says and waits until it answers.
func StartServer(t testing.TB, o Options) *Server {
	t.Helper()
	if o.Binary == "" {
		o.Binary = "redis-server"
	}
	s := &Server{t: t, bin: Binary(t, o.Binary), dir: t.TempDir(), args: o.Args, mk: o.ports, n: max(o.nports, 1)}
	if s.mk == nil {
		s.mk = func(p []int) []string { return []string{"--port", strconv.Itoa(p[0])} }
	}
	if o.TLS {
		s.certs = NewCerts(t, s.dir)
		mk := s.mk
		s.mk = func(p []int) []string {
			return append([]string{"--port", "0", "--tls-port", strconv.Itoa(p[0]),
				"--tls-cert-file", s.certs.ServerCert, "--tls-key-file", s.certs.ServerKey,
				"--tls-ca-cert-file", s.certs.CA, "--tls-auth-clients", "no"}, mk(p)[2:]...)
		}
	}
	var err error
	for attempt := 0; attempt < 10; attempt++ {
		s.ports = make([]int, s.n)
		for i := range s.ports {
			s.ports[i] = testnet.FreePort(t)
		}
		if err = s.start(); err == nil {
			t.Cleanup(s.Kill)
			return s
		}
	}
	t.Fatalf("%s did not start: %v\n%s", o.Binary, err, s.Log())
	return nil
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.ports[0]) }

// Port is the server's (first) port.
func (s *Server) Port() int { return s.ports[0] }

// Certs is the CA and certificates of a TLS server, nil without TLS.
func (s *Server) Certs() *Certs { return s.certs }

// start runs the server and waits until it answers or exits (a port taken
// since it was chosen, for one).
func (s *Server) start() error {
	args := append(s.mk(s.ports), "--bind", "127.0.0.1", "--dir", s.dir, "--save", "", "--appendonly", "no",
		"--logfile", filepath.Join(s.dir, "redis.log"))
	s.cmd = exec.Command(s.bin, append(args, s.args...)...)
	if err := s.cmd.Start(); err != nil {
		return err
	}
	exit := make(chan struct{})
	s.exit = exit
	go func(cmd *exec.Cmd) { _ = cmd.Wait(); close(exit) }(s.cmd)
	// A server that neither answers nor exits within a minute is stuck; on
	// a busy machine starting takes well under a second.
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); {
		select {
		case <-exit:
			s.cmd = nil
			return errors.New("server exited while starting")
		default:
		}
		if s.certs != nil && s.listening() || s.certs == nil && Ping(s.Addr()) {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.Kill()
	return os.ErrDeadlineExceeded
}

// listening reports whether the port accepts connections and the log says
// the server is ready (a TLS server cannot be PINGed in clear).
func (s *Server) listening() bool {
	c, err := net.DialTimeout("tcp", s.Addr(), 200*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return strings.Contains(s.Log(), "Ready to accept connections")
}

// Kill stops the server abruptly, as a crash or a network partition would.
func (s *Server) Kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.exit
	s.cmd = nil
}

// Restart starts a fresh, empty server on the same ports, waiting for the
// old socket to be released.
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	var err error
	for range 100 {
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("server did not restart on port %d: %v\n%s", s.ports[0], err, s.Log())
}

// Log returns the server's log file.
func (s *Server) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
	return string(b)
}

// Ping sends an inline PING to a plain-text server and waits for +PONG.
func Ping(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && line == "+PONG\r\n"
}

// command sends one inline command and returns the reply's text: a bulk
// string's body, or a simple string or error line.
func command(addr, cmd string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(c, "%s\r\n", cmd); err != nil {
		return "", err
	}
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if !strings.HasPrefix(line, "$") {
		return line, nil
	}
	n, err := strconv.Atoi(line[1:])
	if err != nil || n < 0 {
		return "", fmt.Errorf("reply %q", line)
	}
	body := make([]byte, n+2)
	if _, err := io.ReadFull(r, body); err != nil {
		return "", err
	}
	return string(body[:n]), nil
}
