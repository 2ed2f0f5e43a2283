// The state of the hunt at a glance: source, filter, trace time, rate, losses, totals, progress.
import { Box, Text } from 'ink';
import { describeFilter } from '../../engine/filter.js';
import { fmtBytes, fmtCount } from '../../report/format.js';
import type { Report } from '../../report/model.js';
import { describeSource } from '../../report/text.js';
import { color } from '../theme.js';

export interface HeaderProps {
  report: Report;
  width: number;
  eventsPerSec: number;
  progress: number | undefined;
  finished: boolean;
  paused: boolean;
  problem: string | undefined;
}

function bar(share: number, width: number): string {
  const full = Math.round(share * width);
  return '█'.repeat(full) + '░'.repeat(Math.max(0, width - full));
}

export function Header({ report: r, width, eventsPerSec, progress, finished, paused, problem }: HeaderProps) {
  const t = r.totals;
  const span = r.span.lastTs - r.span.firstTs;
  const state = paused ? 'PAUSED' : finished ? (r.source.kind === 'replay' ? 'done' : 'ended') : r.source.kind === 'live' ? 'tracing' : 'reading';
  const progressText = progress !== undefined && !finished ? ` ${bar(progress, 12)} ${Math.round(progress * 100)}%` : '';
  return (
    <Box flexDirection="column" width={width}>
      <Box>
        <Text bold>kleak </Text>
        <Text wrap="truncate-end">
          {describeSource(r)} · filter {describeFilter(r.filter)}
          {r.minAgeSec > 0 ? ` · older than ${r.minAgeSec}s` : ''}
        </Text>
      </Box>
      <Text wrap="truncate-end">
        <Text color={color(paused ? 'yellow' : finished ? 'cyan' : 'green')}>{state}</Text>
        {progressText} · trace {span.toFixed(1)}s · {fmtCount(t.events)} events · {fmtCount(Math.round(eventsPerSec))} ev/s ·{' '}
        <Text color={t.lostEvents > 0 ? color('red') : undefined} bold={t.lostEvents > 0}>
          lost {fmtCount(t.lostEvents)}
        </Text>
      </Text>
      <Text wrap="truncate-end">
        outstanding <Text bold>{fmtCount(t.outstanding)}</Text> ({fmtBytes(t.outstandingBytes)}) · matched {fmtCount(t.matchedFrees)} · unknown {fmtCount(t.unknownFrees)} · missed{' '}
        {fmtCount(t.missedFrees)}
        {t.badLines > 0 ? ` · bad lines ${fmtCount(t.badLines)}` : ''}
      </Text>
      {problem ? (
        <Text color={color('red')} wrap="truncate-end">
          {problem}
        </Text>
      ) : null}
    </Box>
  );
}
