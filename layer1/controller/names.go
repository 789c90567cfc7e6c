package controller

import (
	"fmt"
	"math/rand/v2"
)

// Words of generated app names, like "brave-otter-4821": at most 8 letters
// each, so that a name stays well under the 30-byte limit.
var (
	nameAdjectives = []string{
		"able", "agile", "amber", "bold", "brave", "bright", "calm", "clever",
		"cosmic", "crisp", "daring", "eager", "fancy", "fierce", "gentle", "glad",
		"golden", "happy", "humble", "jolly", "keen", "kind", "lively", "lucky",
		"mellow", "merry", "mighty", "noble", "polite", "proud", "quick", "quiet",
		"rapid", "silent", "sleek", "snowy", "solid", "steady", "sunny", "swift",
		"tidy", "vivid", "warm", "wise", "witty", "young", "zesty", "zippy",
	}
	nameNouns = []string{
		"badger", "beaver", "bison", "cobra", "condor", "crane", "dingo", "dolphin",
		"eagle", "falcon", "ferret", "finch", "gecko", "heron", "ibex", "jaguar",
		"koala", "lemur", "lynx", "marmot", "marten", "moose", "narwhal", "ocelot",
		"orca", "osprey", "otter", "panda", "parrot", "pelican", "puffin", "quail",
		"raven", "salmon", "seal", "sparrow", "stoat", "tapir", "tiger", "toucan",
		"turtle", "walrus", "weasel", "whale", "wombat", "yak", "zebra", "vole",
	}
)

// generateName returns a random app name of the form adjective-noun-NNNN.
func generateName() string {
	return fmt.Sprintf("%s-%s-%d",
		nameAdjectives[rand.IntN(len(nameAdjectives))],
		nameNouns[rand.IntN(len(nameNouns))],
		1000+rand.IntN(9000))
}
