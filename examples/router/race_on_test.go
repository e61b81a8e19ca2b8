//go:build race

package main

// raceEnabled: the race detector multiplies memory and CPU, so resource
// figures are measured without it.
const raceEnabled = true
