// Command worker is the worker process of the Go test app: it logs a line
// every few seconds until it is stopped.
package main

import (
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/google/uuid"
)

func main() {
	id := uuid.NewString()
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, os.Interrupt)
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	log.Printf("worker %s started", id)
	for {
		select {
		case <-tick.C:
			log.Printf("worker %s working", id)
		case <-stop:
			log.Printf("worker %s stopping", id)
			return
		}
	}
}
