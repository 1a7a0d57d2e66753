// Candlestick chart with volume (lightweight-charts). History comes from /api/candles, the
// forming candle from the `candles` stream; the series is updated in place (one `update` per
// frame for the last bar) instead of re-rendering through React.

import { useEffect, useRef } from "react";
import {
  CandlestickSeries,
  HistogramSeries,
  IChartApi,
  ISeriesApi,
  UTCTimestamp,
  createChart,
} from "lightweight-charts";
import { store, useSlice } from "../store";
import { Candle } from "../types";

const UP = "#1f9d6b";
const DOWN = "#d2453d";
export const INTERVALS = ["1m", "5m", "1h", "1d"];

function bar(c: Candle) {
  return { time: c.time as UTCTimestamp, open: c.open, high: c.high, low: c.low, close: c.close };
}
function vol(c: Candle) {
  return { time: c.time as UTCTimestamp, value: c.volume, color: c.close >= c.open ? `${UP}80` : `${DOWN}80` };
}

export function Chart({ interval, onInterval }: { interval: string; onInterval: (i: string) => void }) {
  const host = useRef<HTMLDivElement>(null);
  const chart = useRef<IChartApi | null>(null);
  const candles = useRef<ISeriesApi<"Candlestick"> | null>(null);
  const volume = useRef<ISeriesApi<"Histogram"> | null>(null);
  const drawn = useRef<{ first: number; last: number; count: number }>({ first: 0, last: 0, count: 0 });
  const version = useSlice("candles");

  useEffect(() => {
    if (!host.current) return;
    const c = createChart(host.current, {
      autoSize: true,
      layout: { background: { color: "#10151c" }, textColor: "#c7d0db", fontSize: 11 },
      grid: { vertLines: { color: "#1c2430" }, horzLines: { color: "#1c2430" } },
      timeScale: { timeVisible: true, secondsVisible: false },
      rightPriceScale: { scaleMargins: { top: 0.08, bottom: 0.28 } },
    });
    candles.current = c.addSeries(CandlestickSeries, {
      upColor: UP,
      downColor: DOWN,
      borderVisible: false,
      wickUpColor: UP,
      wickDownColor: DOWN,
    });
    volume.current = c.addSeries(HistogramSeries, { priceFormat: { type: "volume" }, priceScaleId: "vol" });
    volume.current.priceScale().applyOptions({ scaleMargins: { top: 0.78, bottom: 0 } });
    chart.current = c;
    return () => {
      c.remove();
      chart.current = null;
    };
  }, []);

  useEffect(() => {
    const cs = store.candles;
    const s = candles.current;
    const v = volume.current;
    if (!s || !v) return;
    const d = drawn.current;
    const last = cs[cs.length - 1];
    // Same history, the forming candle moved or one new candle: update in place.
    if (last && d.count > 0 && cs[0].time === d.first && cs.length - d.count <= 1 && last.time >= d.last) {
      s.update(bar(last));
      v.update(vol(last));
    } else {
      s.setData(cs.map(bar));
      v.setData(cs.map(vol));
    }
    drawn.current = { first: cs[0]?.time ?? 0, last: last?.time ?? 0, count: cs.length };
  }, [version]);

  const last = store.candles[store.candles.length - 1];
  return (
    <section className="panel chart" aria-label="Price chart">
      <header>
        <h2>Chart</h2>
        <div role="group" aria-label="Candle interval" className="seg">
          {INTERVALS.map((i) => (
            <button key={i} type="button" aria-pressed={i === interval} onClick={() => onInterval(i)}>
              {i}
            </button>
          ))}
        </div>
        <output className="ohlc" data-testid="last-candle" data-time={last?.time ?? ""} data-close={last?.close ?? ""} data-volume={last?.volume ?? ""}>
          {last
            ? `O ${last.open} H ${last.high} L ${last.low} C ${last.close} V ${last.volume}`
            : "no trades yet"}
        </output>
      </header>
      <div ref={host} className="chart-host" />
    </section>
  );
}
