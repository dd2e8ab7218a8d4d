// Package packaging holds what `make package` builds the .deb and .rpm
// from: the nfpm config (nfpm.yaml) and the maintainer scripts
// (scripts/). It has no Go code of its own; its tests build the packages,
// install the .deb on the machine, check what it put where and purge it.
package packaging
