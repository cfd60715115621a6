// Screenshots of workflows in the real ComfyUI frontend, with playwright-core and a headless Chromium.
// Run by docs/screenshots.py (which starts the ComfyUI server); on its own:
//   cd DIR_WITH_playwright-core && node /path/to/docs/screenshots.mjs URL JOBS.json
// JOBS.json: [{"workflow": "path.json", "out": "shot.png", "run": false, "clip": false}, ...]
//   run:  queue the workflow and wait until it has run (its previews then show the outputs)
//   clip: cut the picture to the nodes (20 px around them) instead of the whole 1920×1080 window
// Prints one JSON line per job: the frontend's version, the view it restored, the nodes' boxes on screen
// (title bar included) and what went wrong in the page (errors, toasts).
import { createRequire } from 'module';
import fs from 'fs';
import path from 'path';

// playwright-core is looked up from the current folder (a scratch folder, outside the repository)
const require = createRequire(path.join(process.cwd(), 'noop.js'));
const { chromium } = require('playwright-core');

const [url, jobsFile] = process.argv.slice(2);
const jobs = JSON.parse(fs.readFileSync(jobsFile, 'utf8'));
const WIDTH = 1920, HEIGHT = 1080;

// What a returning user has: no first-run template browser, no minimap, no canvas statistics, no
// "Nodes 2.0" banner; everything else at the frontend's defaults.
const SETTINGS = { 'Comfy.TutorialCompleted': true, 'Comfy.Minimap.Visible': false, 'Comfy.Graph.CanvasInfo': false };
for (const [id, value] of Object.entries(SETTINGS)) {
  const response = await fetch(`${url}/settings/${encodeURIComponent(id)}`, { method: 'POST', body: JSON.stringify(value) });
  if (!response.ok) throw new Error(`setting ${id}: ${response.status}`);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  for (const job of jobs) {
    const context = await browser.newContext({ viewport: { width: WIDTH, height: HEIGHT }, deviceScaleFactor: 1 });
    await context.addInitScript(() => localStorage.setItem('vueNodesBannerDismissed', 'true'));
    const page = await context.newPage();
    const problems = [];
    page.on('pageerror', (error) => problems.push(`pageerror: ${error.message}`));
    await page.goto(url);
    await page.waitForFunction(() => window.app?.graph && window.app?.canvas, null, { timeout: 120000 });
    await page.waitForTimeout(2000);
    const workflow = JSON.parse(fs.readFileSync(job.workflow, 'utf8'));
    const name = path.basename(job.workflow);
    await page.evaluate(async ([graph, name]) => { await window.app.loadGraphData(graph, true, true, name); },
                        [workflow, name]);
    await page.waitForTimeout(2500);
    if (job.run) {
      // a run that fails leaves this picture out and the others are still made (exit status 1)
      const failed = await page.evaluate(() => new Promise((resolve) => {
        const api = window.app.api;
        api.addEventListener('execution_success', () => resolve(null), { once: true });
        api.addEventListener('execution_error', (e) => resolve(`${e.detail.node_type}: ${e.detail.exception_message}`),
                             { once: true });
        window.app.queuePrompt(0);
      }));
      if (failed) {
        console.log(JSON.stringify({ workflow: path.basename(job.workflow), out: job.out, error: `the run failed: ${failed}` }));
        process.exitCode = 1;
        await context.close();
        continue;
      }
      await page.waitForTimeout(1500);
    }
    await page.mouse.move(WIDTH - 5, HEIGHT / 2); // no hover highlight or tooltip on a node
    await page.waitForTimeout(500);
    const view = await page.evaluate(() => {
      const { canvas } = window.app;
      const [ox, oy] = canvas.ds.offset, scale = canvas.ds.scale;
      const title = window.LiteGraph?.NODE_TITLE_HEIGHT ?? 30;
      return {
        frontend: window.__COMFYUI_FRONTEND_VERSION__,
        scale, offset: [ox, oy],
        nodes: window.app.graph._nodes.map((n) => ({
          id: n.id, type: n.type, title: n.title, size: [n.size[0], n.size[1]],
          min: n.computeSize ? [...n.computeSize()].map(Math.round) : null,
          screen: [(n.pos[0] + ox) * scale, (n.pos[1] - title + oy) * scale,
                   (n.pos[0] + n.size[0] + ox) * scale, (n.pos[1] + n.size[1] + oy) * scale],
        })),
        toasts: [...document.querySelectorAll('.p-toast-message')].map((t) => t.innerText.replace(/\s+/g, ' ')),
        dialogs: [...document.querySelectorAll('.p-dialog')].map((d) => d.innerText.slice(0, 200).replace(/\s+/g, ' ')),
      };
    });
    let clip;
    if (job.clip) {
      const boxes = view.nodes.map((n) => n.screen);
      const x = Math.max(0, Math.min(...boxes.map((b) => b[0])) - 20), y = Math.max(0, Math.min(...boxes.map((b) => b[1])) - 20);
      clip = { x, y, width: Math.min(WIDTH, Math.max(...boxes.map((b) => b[2])) + 20) - x,
               height: Math.min(HEIGHT, Math.max(...boxes.map((b) => b[3])) + 20) - y };
    }
    fs.mkdirSync(path.dirname(job.out), { recursive: true });
    await page.screenshot({ path: job.out, clip });
    console.log(JSON.stringify({ workflow: name, out: job.out, ...view, problems }));
    await context.close();
  }
} finally {
  await browser.close();
}
