// Command gobroken does not compile: it is the test app for a failed build.
package main

import "fmt"

func main() {
	var count int = "three"
	fmt.Println(count)
}
