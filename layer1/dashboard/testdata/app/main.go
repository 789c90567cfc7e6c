// Command app is the app the dashboard's browser tests deploy, in a
// FROM-scratch image whose entrypoint is this binary.
//
// "app serve" listens on $PORT, prints "tick N" every half second, and
// answers GET / with "hello". With HOLD=1, GET /healthz fails until
// GET /ready was requested, so a test decides when a deployment of it
// ends.
package main

import (
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) != 2 || os.Args[1] != "serve" {
		fmt.Printf("unexpected arguments %q\n", os.Args[1:])
		os.Exit(3)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	go func() {
		<-sigs
		os.Exit(0)
	}()
	var ready atomic.Bool
	ready.Store(os.Getenv("HOLD") != "1")
	go func() {
		for i := 1; ; i++ {
			fmt.Println("tick", i)
			time.Sleep(500 * time.Millisecond)
		}
	}()
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "hello")
	})
	mux.HandleFunc("/ready", func(w http.ResponseWriter, r *http.Request) {
		ready.Store(true)
		fmt.Fprintln(w, "ready")
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if !ready.Load() {
			http.Error(w, "held", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	fmt.Println("listening on", os.Getenv("PORT"))
	if err := http.ListenAndServe(":"+os.Getenv("PORT"), mux); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
}
