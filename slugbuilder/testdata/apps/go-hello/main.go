// Command gohello is the smallest Go test app: one main package and no
// Procfile, so the Go buildpack declares its web process.
package main

import "fmt"

func main() {
	fmt.Println("hello")
}
