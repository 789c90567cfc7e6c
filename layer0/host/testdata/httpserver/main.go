// Command httpserver is the tiny HTTP server the host agent's tests run in a
// FROM-scratch image.
//
// It listens on $PORT (when set) and answers:
//
//	GET /         "hello from <hostname>"
//	GET /healthz  200, or 503 until $READY_AFTER has passed or after /sick
//	GET /sick     makes /healthz fail from now on
//	GET /say?msg= prints msg on stdout
//
// Environment: READY_AFTER (duration), LISTEN_AFTER (duration before it
// binds the port), EXIT_AFTER and EXIT_CODE (exit on its own), IGNORE_TERM=1
// (ignore SIGTERM, so only SIGKILL stops it).
//
// "serve" (or no argument) runs the server. With other arguments it runs one
// command to completion instead, as a one-off job does:
//
//	transform IN OUT  writes OUT: "transformed:" and IN in upper case;
//	                  fails unless IN is on a read-only mount
//	stat PATH         prints "PATH size=N"; fails unless PATH is on a
//	                  read-only mount
//	id                prints "uid=U gid=G"
//	burn MIB [PCT]    holds MIB mebibytes of touched memory and keeps PCT
//	                  percent (default 100) of one core busy until it is
//	                  stopped
package main

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] != "serve" {
		if err := command(os.Args[1:]); err != nil {
			fmt.Fprintln(os.Stderr, "error:", err)
			os.Exit(2)
		}
		return
	}
	start := time.Now()
	fmt.Println("starting")
	fmt.Fprintln(os.Stderr, "stderr says hi")

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	go func() {
		for range sigs {
			if os.Getenv("IGNORE_TERM") == "1" {
				fmt.Println("got SIGTERM, ignoring it")
				continue
			}
			fmt.Println("got SIGTERM")
			os.Exit(0)
		}
	}()

	if d := duration("EXIT_AFTER"); d > 0 {
		code, _ := strconv.Atoi(os.Getenv("EXIT_CODE"))
		go func() {
			time.Sleep(d)
			for i := 1; i <= 30; i++ {
				fmt.Printf("last words %d\n", i)
			}
			os.Exit(code)
		}()
	}

	port := os.Getenv("PORT")
	if port == "" {
		fmt.Println("no PORT; idling")
		select {}
	}
	time.Sleep(duration("LISTEN_AFTER"))

	readyAfter := duration("READY_AFTER")
	var sick atomic.Bool
	host, _ := os.Hostname()
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s\n", host)
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if sick.Load() || time.Since(start) < readyAfter {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/sick", func(w http.ResponseWriter, r *http.Request) {
		sick.Store(true)
		fmt.Println("now sick")
	})
	mux.HandleFunc("/say", func(w http.ResponseWriter, r *http.Request) {
		fmt.Println(r.URL.Query().Get("msg"))
	})
	fmt.Printf("listening on :%s\n", port)
	if err := http.ListenAndServe(":"+port, mux); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func duration(name string) time.Duration {
	d, err := time.ParseDuration(os.Getenv(name))
	if err != nil {
		return 0
	}
	return d
}

// command runs one of the one-off commands.
func command(args []string) error {
	switch {
	case args[0] == "transform" && len(args) == 3:
		in, err := os.ReadFile(args[1])
		if err != nil {
			return err
		}
		if err := readOnly(args[1]); err != nil {
			return err
		}
		out := append([]byte("transformed:"), bytes.ToUpper(in)...)
		if err := os.MkdirAll(filepath.Dir(args[2]), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(args[2], out, 0o644); err != nil {
			return err
		}
		fmt.Printf("transformed %d bytes\n", len(in))
		return nil
	case args[0] == "stat" && len(args) == 2:
		fi, err := os.Stat(args[1])
		if err != nil {
			return err
		}
		if err := readOnly(args[1]); err != nil {
			return err
		}
		fmt.Printf("%s size=%d\n", args[1], fi.Size())
		return nil
	case args[0] == "burn" && (len(args) == 2 || len(args) == 3):
		mib, err := strconv.Atoi(args[1])
		if err != nil || mib < 0 {
			return fmt.Errorf("burn %q: want a number of MiB", args[1])
		}
		percent := 100
		if len(args) == 3 {
			if percent, err = strconv.Atoi(args[2]); err != nil || percent < 1 || percent > 100 {
				return fmt.Errorf("burn %s %q: want a percentage of one core, 1 to 100", args[1], args[2])
			}
		}
		held := make([]byte, mib<<20)
		for i := 0; i < len(held); i += 4096 {
			held[i] = 1 // touch every page so that it is resident
		}
		fmt.Printf("holding %d MiB, burning %d%% of a core\n", mib, percent)
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGTERM)
		var stop atomic.Bool
		go func() { <-sigs; stop.Store(true) }()
		// In each 100 ms period, spin for percent ms of CPU time and sleep
		// for the rest.
		x := uint64(1)
		for !stop.Load() {
			busy := time.Duration(percent) * time.Millisecond
			for start := time.Now(); time.Since(start) < busy; {
				for range 1000 {
					x = x*6364136223846793005 + 1442695040888963407
				}
			}
			if percent < 100 {
				time.Sleep(100*time.Millisecond - busy)
			}
		}
		fmt.Println("stopped", x&1, len(held))
		return nil
	case args[0] == "id" && len(args) == 1:
		fmt.Printf("uid=%d gid=%d\n", os.Getuid(), os.Getgid())
		return nil
	}
	return fmt.Errorf("unknown command %q", args)
}

// readOnly checks that path is on a read-only mount: even a chmod that
// changes nothing fails there (unlike an open for writing, which can fail
// for other reasons first, such as a running executable).
func readOnly(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	err = os.Chmod(path, fi.Mode().Perm())
	if err == nil {
		return fmt.Errorf("%s is writable", path)
	}
	if !errors.Is(err, syscall.EROFS) {
		return fmt.Errorf("%s: %w, want a read-only file system", path, err)
	}
	return nil
}
