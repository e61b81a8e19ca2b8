package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"

	"github.com/kvtrack/kvtrack/kvcache/blockhash"
	"github.com/kvtrack/kvtrack/kvcache/kvblock"
)

func init() {
	register(command{
		name:    "demo",
		summary: "show the block keys of a sample prompt under every hash algorithm",
		run:     runDemo,
	})
}

// demoTokens is a sample prompt's token IDs: 48 tokens, three full blocks
// of 16.
var demoTokens = []uint32{
	151644, 8948, 198, 2610, 525, 264, 10950, 17847, 13, 151645, 198, 151644,
	872, 198, 3838, 374, 279, 6722, 315, 9625, 30, 21927, 11, 323, 1128, 374,
	1181, 7042, 30, 151645, 198, 151644, 77091, 198, 785, 6722, 315, 9625, 374,
	12095, 13, 1084, 702, 264, 7042, 315, 911, 220,
}

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("demo", demoSynopsis, stdout, stderr)
	seed := fs.String("hash-seed", "42", "PYTHONHASHSEED of the imagined engine")
	bs := fs.Int("block-size", 16, "block size in tokens")
	fs.deprecated("seed", "hash-seed")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "A %d-token prompt, PYTHONHASHSEED=%q, --block-size %d: the keys vLLM publishes per block.\n\n", len(demoTokens), *seed, *bs)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "algorithm\t")
	n := len(demoTokens) / *bs
	for i := range n {
		fmt.Fprintf(tw, "block %d\t", i)
	}
	fmt.Fprintln(tw)
	for _, a := range blockhash.Algorithms() {
		h, err := blockhash.NewHasher(blockhash.HashConfig{Algorithm: a, Seed: *seed, BlockSize: *bs})
		if err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
		keys, err := h.BlockKeys(nil, demoTokens, nil)
		if err != nil {
			return err
		}
		printKeyRow(tw, string(a), keys)
	}
	th, err := blockhash.NewTokenHasher(*bs)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	keys, _ := th.BlockKeys(nil, 0, demoTokens, nil)
	printKeyRow(tw, "tokens scheme", keys)
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nReproduce a row: kvtrack hash --hash-algo sha256 --hash-seed 42 --tokens %s\n", joinTokens(demoTokens))
	return nil
}

func printKeyRow(w io.Writer, name string, keys []kvblock.Key) {
	fmt.Fprintf(w, "%s\t", name)
	for _, k := range keys {
		fmt.Fprintf(w, "%d\t", uint64(k))
	}
	fmt.Fprintln(w)
}

func joinTokens(toks []uint32) string {
	b := make([]byte, 0, 8*len(toks))
	for i, t := range toks {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendUint(b, uint64(t), 10)
	}
	return string(b)
}

const demoSynopsis = `demo [--hash-seed SEED] [--block-size N]

Prints, for a built-in sample prompt, the block key vLLM publishes for each
full block under every --prefix-caching-hash-algo, so you can see that the
keys depend on the algorithm, PYTHONHASHSEED and --block-size (the router must
use the pods' values). Needs no vLLM, network or tokenizer. ('make demo' runs
'kvtrack simulate' instead.)`
