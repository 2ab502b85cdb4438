// Package loopback finds free loopback ports for the servers the tests and
// benchmarks start as child processes, which are given fixed listeners
// because they do not report the ones the kernel would pick.
package loopback

import (
	"fmt"
	"net"
)

// FreePorts returns n distinct loopback ports no one listened on a moment
// ago. Each is held until all are found, so that they differ; another process
// may still take one before its server binds it.
func FreePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free loopback port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
