package synth

import (
	"github.com/streamindex/indexer/event"
)

// Model is the index a set of events should produce, computed in memory
// with the delete-wins state machine, independently of Redis.
type Model struct {
	// Live holds the live files per table ("db:table") by path.
	Live map[string]map[string]event.File
	// Tombstoned holds the deleted paths per table.
	Tombstoned map[string]map[string]bool
}

// NewModel returns an empty model.
func NewModel() *Model {
	return &Model{Live: make(map[string]map[string]event.File), Tombstoned: make(map[string]map[string]bool)}
}

// Apply applies events in order. Duplicates and any order give the same
// model, as they must give the same index.
func (m *Model) Apply(events ...event.Event) {
	for i := range events {
		e := &events[i]
		t := e.Database + ":" + e.Table
		if m.Live[t] == nil {
			m.Live[t] = make(map[string]event.File)
			m.Tombstoned[t] = make(map[string]bool)
		}
		live, tomb := m.Live[t], m.Tombstoned[t]
		e.Files(func(f *event.File, deleted bool) {
			switch {
			case deleted:
				delete(live, f.Path)
				tomb[f.Path] = true
			case tomb[f.Path]:
			default:
				if _, ok := live[f.Path]; !ok {
					live[f.Path] = *f
				}
			}
		})
	}
}

// Folders returns the live-file count per folder of a table.
func (m *Model) Folders(db, table string) map[string]int64 {
	out := make(map[string]int64)
	for _, f := range m.Live[db+":"+table] {
		out[f.Dir()]++
	}
	return out
}

// Totals returns the number of live files and their bytes and rows.
func (m *Model) Totals(db, table string) (files, bytes, rows int64) {
	for _, f := range m.Live[db+":"+table] {
		files++
		bytes += f.SizeBytes
		rows += f.RowCount
	}
	return files, bytes, rows
}
