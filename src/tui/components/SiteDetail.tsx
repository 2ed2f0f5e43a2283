// One call site in depth: its stacks, sample pointers, and outstanding count over time.
import type { ReactElement } from 'react';
import { Box, Text } from 'ink';
import { fmtAge, fmtBytes, fmtCount, fmtRate, sparkline, visible } from '../../report/format.js';
import type { SiteReport } from '../../report/model.js';
import { color, verdictColor } from '../theme.js';

export interface SiteDetailProps {
  site: SiteReport | undefined;
  name: string | undefined;
  width: number;
  height: number;
}

export function SiteDetail({ site, name, width, height }: SiteDetailProps) {
  if (!site) return <Text dimColor>{name ?? 'This site'} has no outstanding allocations now. Esc to go back.</Text>;
  const lines: ReactElement[] = [];
  const [first, ...others] = site.stacks;
  lines.push(
    <Text key="series" wrap="truncate-end">
      outstanding over time <Text color={color('cyan')}>{sparkline(site.series, Math.max(10, width - 30))}</Text> {fmtCount(site.outstanding)}
    </Text>,
  );
  if (first) {
    lines.push(<Text key="st" bold>{`stack of ${fmtCount(first.outstanding)} (${site.stacks.length} distinct):`}</Text>);
    // What the samples and headings leave of the screen goes to the top stack's frames.
    const frames = first.frames.slice(0, Math.max(3, height - 6 - Math.min(5, site.samples.length) - Math.min(3, others.length)));
    frames.forEach((f, i) => lines.push(<Text key={`f${i}`} wrap="truncate-end">{`  ${i === 0 ? ' ' : '←'} ${visible(f)}`}</Text>));
    others.slice(0, 3).forEach((st, i) =>
      lines.push(<Text key={`o${i}`} wrap="truncate-end">{`  ${fmtCount(st.outstanding)} × ${st.frames.map(visible).join(' ← ')}`}</Text>),
    );
  } else {
    lines.push(<Text key="nost" dimColor>no stacks in this trace (record with --stacks, or trace-cmd -T)</Text>);
  }
  lines.push(<Text key="sh" bold>oldest outstanding pointers:</Text>);
  site.samples.forEach((p, i) =>
    lines.push(
      <Text key={`p${i}`} wrap="truncate-end">
        {`  ${p.ptr}  age ${fmtAge(p.ageSec).padStart(6)}  ${p.pid !== undefined ? `pid ${p.pid} ` : ''}${visible(p.comm ?? '')}${p.bytesReq !== undefined ? `  ${p.bytesReq} B requested` : ''}`}
      </Text>,
    ),
  );
  // Never more lines than the screen has below the header (a small terminal overlapped them).
  const budget = Math.max(1, height - 2 - (site.boundedLifetimeSec !== undefined ? 1 : 0) - (site.unseenFrees !== undefined ? 1 : 0) - (site.possiblePhantoms > 0 ? 1 : 0));
  return (
    <Box flexDirection="column" width={width}>
      <Text wrap="truncate-end">
        <Text bold>{visible(site.function)}</Text> ({visible(site.callSite)}) · {site.caches ? site.caches.map((c) => `${visible(c.cache)} ${fmtCount(c.outstanding)}`).join(', ') : visible(site.cache || '-')} · <Text color={verdictColor(site.verdict)}>{site.verdict}</Text>
      </Text>
      <Text wrap="truncate-end">
        {fmtCount(site.outstanding)} outstanding, {fmtBytes(site.outstandingBytes)} · {fmtRate(site.growthPerMin)}/min · oldest {fmtAge(site.oldestAgeSec)} · allocated{' '}
        {fmtCount(site.allocs)}, freed {fmtCount(site.frees)}
      </Text>
      {site.boundedLifetimeSec !== undefined ? (
        <Text wrap="truncate-end">bounded: objects live about {fmtAge(site.boundedLifetimeSec)} (all older ones were freed); churn, not a leak</Text>
      ) : null}
      {site.unseenFrees !== undefined ? (
        <Text color={color('yellow')} wrap="truncate-end">
          {site.unseenFrees === 'rcu'
            ? 'not seen freed (freed by RCU batching, which kmem tracepoints do not show): --backend kernel sees it'
            : `not seen freed: ${site.missedFrees} pointers came back while outstanding (RCU or bulk frees); --backend kernel sees RCU`}
        </Text>
      ) : null}
      {site.possiblePhantoms > 0 ? <Text color={color('red')}>{site.possiblePhantoms} predate lost events and may be phantoms</Text> : null}
      {lines.slice(0, budget)}
    </Box>
  );
}
