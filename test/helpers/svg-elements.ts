// Reads an SVG document as XML for tests, strictly enough to catch a broken one: every tag must
// close in order, attributes must be name="value", text may hold no raw '<' and only known or
// numeric entities. Returns every element with its attributes, in document order.
export interface XmlElement {
  name: string;
  attributes: Record<string, string>;
}

const TAG = /<(\/?)([a-zA-Z_][\w:.-]*)((?:\s+[\w:.-]+="[^"<]*")*)\s*(\/?)>/y;
const ATTRIBUTE = /([\w:.-]+)="([^"]*)"/g;
const ENTITY = /&(?!(?:amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+);)/;

export function svgElements(text: string): XmlElement[] {
  const elements: XmlElement[] = [];
  const open: string[] = [];
  let at = text.startsWith('<?xml') ? text.indexOf('?>') + 2 : 0;
  while (at < text.length) {
    const next = text.indexOf('<', at);
    const chunk = text.slice(at, next < 0 ? text.length : next);
    if (ENTITY.test(chunk) || chunk.includes('>')) throw new Error(`bad text at ${at}: ${chunk.slice(0, 60)}`);
    if (next < 0) break;
    TAG.lastIndex = next;
    const match = TAG.exec(text);
    if (match === null) throw new Error(`bad tag at ${next}: ${text.slice(next, next + 80)}`);
    const [whole, closing, name = '', attributeText = '', selfClosing] = match;
    if (ENTITY.test(attributeText)) throw new Error(`bad entity in <${name}${attributeText}>`);
    if (closing === '/') {
      if (open.pop() !== name) throw new Error(`</${name}> closes nothing open at ${next}`);
    } else {
      const attributes: Record<string, string> = {};
      for (const [, key = '', value = ''] of attributeText.matchAll(ATTRIBUTE)) attributes[key] = value;
      elements.push({ name, attributes });
      if (selfClosing !== '/') open.push(name);
    }
    at = next + whole.length;
  }
  if (open.length > 0) throw new Error(`unclosed <${open.join('>, <')}>`);
  if (elements[0]?.name !== 'svg') throw new Error('not an <svg> document');
  return elements;
}

/** The data points Vega drew (one symbol per point, aria-roledescription="point"). */
export function pointsIn(text: string): XmlElement[] {
  return svgElements(text).filter((e) => e.attributes['aria-roledescription'] === 'point');
}
