// Package filter holds everything that judges a frame without knowing where it
// goes next: decoding (Frame), the layer-2 guard of an instance port (Guard),
// and the compiled security-group classifier (Policy).
//
// # Buffer ownership
//
// Frame.Decode keeps a slice of the buffer it is given and reads every header
// in place; it never copies and never allocates. The Frame is therefore valid
// only as long as the caller does not reuse the buffer: a port worker owns one
// buffer and one Frame, decodes, decides and writes before reading the next
// frame, so nothing outlives its frame. Nothing in this package retains a Frame
// or a slice of its buffer after returning.
//
// # Bad input
//
// A malformed frame is a value, not an error: Decode returns a Reason
// (ReasonMalformed, ReasonFragment, ...) and the caller counts it. Every read
// is preceded by a bounds check; fuzzing keeps that true.
package filter
