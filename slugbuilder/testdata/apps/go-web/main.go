// Command goweb is the web process of the Go test app: it answers on $PORT,
// with a health check at /healthz.
package main

import (
	"fmt"
	"log"
	"net/http"
	"os"

	"github.com/google/uuid"
)

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "5000"
	}
	instance := uuid.NewString()
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from goweb %s\n", instance)
	})
	log.Printf("goweb %s listening on :%s", instance, port)
	log.Fatal(http.ListenAndServe(":"+port, mux))
}
