// Drives the packaged Chromium (/usr/bin/chromium, headless) through the
// RollerTrace console as a compliance officer would. Run by
// tests/integration/console_test.cc, which starts the services and checks what
// this script did against the gRPC API.
//   node console_browser.js <scenario.json>
// The scenario names the console's URL, token files, the records to look at,
// a screenshot directory and a command that makes a new violation.
'use strict';
const fs = require('fs');
const {execFileSync} = require('child_process');
const puppeteer = require('puppeteer-core');

const scenario = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const base = scenario.url;
const done = [];
function check(cond, what) {
  if (!cond) throw new Error('check failed: ' + what);
  done.push(what);
}

async function shot(page, name) {
  await page.screenshot({path: `${scenario.screenshots}/${name}.png`, fullPage: true});
}

async function signIn(page, tokenFile) {
  await page.goto(base + '/login');
  await page.type('#token', fs.readFileSync(tokenFile, 'utf8').trim());
  await Promise.all([page.waitForNavigation(), page.click('#sign-in')]);
}

// The page as printed: what of the console's chrome still shows, how many
// tables do, and the PDF Chromium makes of it (kept beside the screenshots).
async function printed(page, name) {
  await page.emulateMediaType('print');
  const seen = await page.evaluate(() => {
    const visible = e => getComputedStyle(e).display !== 'none' && e.getClientRects().length > 0;
    return {
      chrome: [...document.querySelectorAll('header, form, a.csv, .pages, .live, .live-status, button, .noprint')]
          .filter(visible).map(e => e.outerHTML.slice(0, 60)),
      tables: [...document.querySelectorAll('table')].filter(visible).length,
    };
  });
  const pdf = Buffer.from(await page.pdf({format: 'A4'}));
  fs.writeFileSync(`${scenario.screenshots}/${name}.pdf`, pdf);
  await page.emulateMediaType(null);
  return {...seen, pdf: pdf.subarray(0, 5).toString('latin1') === '%PDF-' && pdf.length > 2000};
}

async function text(page, selector) {
  return page.$eval(selector, e => e.textContent);
}

(async () => {
  const browser = await puppeteer.launch({
    executablePath: '/usr/bin/chromium', headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run'],
  });
  const dialogs = [];
  try {
    const page = await browser.newPage();
    page.setDefaultTimeout(15000);
    page.on('dialog', async d => {
      dialogs.push(d.message());
      await d.accept();
    });
    await page.evaluateOnNewDocument(() => { window.__xss = 0; });

    // Not signed in: every page sends to the sign-in form; a wrong token is refused.
    await page.goto(base + '/');
    check(page.url().endsWith('/login'), 'signed out, the console asks to sign in');
    await page.type('#token', 'not-a-token-of-anybody-0000');
    await Promise.all([page.waitForNavigation(), page.click('#sign-in')]);
    check((await text(page, '#error')).includes('not known'), 'an unknown token is refused');

    // Admin.
    await signIn(page, scenario.admin_token_file);
    check((await text(page, '#role')) === 'admin', 'signed in as admin');
    const overview = await page.content();
    check(overview.includes(scenario.roller), 'the fleet overview lists the roller');
    await shot(page, '01-fleet');

    // The roller's page: its session, patient pseudonym and the cycle it relied on.
    await page.goto(base + '/roller/' + encodeURIComponent(scenario.roller));
    const roller = await page.content();
    check(roller.includes(scenario.session_id), "the roller's page shows its session");
    check(roller.includes(scenario.pseudonym.substring(0, 12)), "the roller's page shows the patient's pseudonym");
    await page.waitForFunction(() => document.getElementById('wear-chart').getAttribute('height') !== null);
    await shot(page, '02-roller');
    const rollerPrint = await printed(page, '02-roller-print');
    check(rollerPrint.chrome.length === 0 && rollerPrint.tables > 0 && rollerPrint.pdf,
          "the roller's page prints its timeline without navigation, actions or download links: " +
          rollerPrint.chrome.join(' | '));

    // Which patients did this roller touch? Typing the clinic's reference finds the patient.
    await page.goto(base + '/patient');
    await page.type('#patient-ref', scenario.patient_ref);
    await Promise.all([page.waitForNavigation(), page.click('#find-patient')]);
    check((await text(page, '#pseudonym')) === scenario.pseudonym, 'the patient reference gives the pseudonym');
    check(!page.url().includes(encodeURIComponent(scenario.patient_ref)), 'the patient reference is not in the URL');
    check((await page.content()).includes(scenario.session_id), "the patient's page lists the session");
    await shot(page, '03-patient');

    // The cycle: record a failed biological indicator, confirm, follow the recall.
    await page.goto(base + scenario.cycle_path);
    check((await text(page, '#parameters')).includes("met the method's minimums"), 'the cycle met its minimums');
    check((await text(page, '#minimums')).includes('134 °C for 3 min'), "the method's minimums are shown");
    await page.select('#bi-result', 'fail');
    await Promise.all([page.waitForNavigation(), page.click('#record-bi')]);
    check((await text(page, '#confirm-text')).includes('starts a recall'), 'a failing result says it starts a recall');
    await shot(page, '04-confirm-bi');
    await Promise.all([page.waitForNavigation(), page.click('#confirm')]);
    check((await text(page, '#bi')).toLowerCase().includes('fail'), 'the cycle shows the failed indicator');
    const recall = await text(page, '#recall');
    check(recall.includes(scenario.roller), 'the recall names the roller it locked');
    await shot(page, '05-recall');
    await page.goto(base + '/roller/' + encodeURIComponent(scenario.roller));
    check((await text(page, '#state')) === 'locked', 'the recalled roller is locked');

    // Unlock as admin, with a reason.
    await page.type('#unlock-reason', scenario.unlock_reason);
    await Promise.all([page.waitForNavigation(), page.click('#unlock')]);
    check((await text(page, '#state')) !== 'locked', 'the admin unlocked the roller');

    // A violation while the violations page is open appears without a reload.
    await page.goto(base + '/violations');
    await shot(page, '06-violations');
    await new Promise(r => setTimeout(r, 1200));
    execFileSync(scenario.violation_command[0], scenario.violation_command.slice(1));
    const appeared = await page.waitForFunction(rule => [...document.querySelectorAll('#live tbody tr')]
        .some(tr => tr.textContent.includes(rule)), {timeout: 15000}, scenario.violation_rule)
        .then(() => true, () => false);
    check(appeared, 'a new violation appeared live on the open page (within 15 s, without a reload)');
    await shot(page, '07-violation-live');
    const csv = await page.evaluate(async () => {
      const r = await fetch('/violations?csv=violations');
      return {type: r.headers.get('content-type'), body: await r.text()};
    });
    check(csv.type.startsWith('text/csv') && csv.body.startsWith('detected,rule'), 'the table downloads as CSV');
    // The page shows the clinic's zone, the CSV the same instant in UTC.
    const shown = await text(page, '#violations tbody tr td');
    const downloaded = csv.body.split('\r\n')[1].split(',')[0];
    check(/ (CET|CEST)$/.test(shown), `times on the page are in the clinic's zone, named (${shown})`);
    check(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$/.test(downloaded) &&
          downloaded.slice(13, 19) === shown.slice(13, 19) && downloaded !== shown.replace(/ CES?T$/, ' UTC'),
          `the CSV holds the same time in UTC (${downloaded})`);
    const violationsPrint = await printed(page, '07-violations-print');
    check(violationsPrint.chrome.length === 0 && violationsPrint.tables > 0 && violationsPrint.pdf,
          'the violations page prints its table without filters, links or live box: ' + violationsPrint.chrome.join(' | '));

    // Hostile device strings are shown as text; nothing runs.
    await page.goto(base + '/roller/' + encodeURIComponent(scenario.hostile_roller));
    const hostile = await page.content();
    check(hostile.includes('&lt;script&gt;'), 'a <script> from a device is shown escaped');
    check(await page.evaluate(() => window.__xss) === 0, 'no device string ran as script');
    check(await page.$$eval('main img', imgs => imgs.length) === 0, 'no element was injected by a device string');
    await shot(page, '08-hostile');

    // Is a device's record complete? Every gap, open or closed.
    await page.goto(base + '/gaps/' + encodeURIComponent(scenario.roller));
    check((await text(page, '#completeness')) === 'Complete', "the roller's record is complete");
    await page.goto(base + '/gaps/' + encodeURIComponent(scenario.hostile_roller));
    check((await text(page, '#completeness')).includes('1 gaps still open'), 'an open gap is shown');
    check((await page.content()).includes(scenario.gap), 'the missing sequences are named');
    await shot(page, '09-gaps');

    await page.goto(base + '/report');
    check((await page.content()).includes('RollerTrace'), 'the period report opens');
    const reportData = await page.evaluate(async () => {
      const j = await fetch('/report?format=json');
      const links = [...document.querySelectorAll('a')].filter(a => a.href.includes('csv=')).map(a => a.href);
      const c = links.length ? await fetch(links[0]) : null;
      return {json: await j.json(), csvType: c ? c.headers.get('content-type') : ''};
    });
    check(reportData.json.summary !== undefined || Object.keys(reportData.json).length > 0, 'the report downloads as JSON');
    check(reportData.csvType.startsWith('text/csv'), 'the report tables download as CSV');
    await shot(page, '10-report');
    const reportPrint = await printed(page, '10-report-print');
    check(reportPrint.chrome.length === 0 && reportPrint.tables > 0 && reportPrint.pdf,
          'the report prints to PDF without the console bar: ' + reportPrint.chrome.join(' | '));
    await page.goto(base + '/verify');
    check((await text(page, '#verify')) === 'Intact', 'the ledger verifies intact');
    await shot(page, '11-verify');

    // An auditor sees no admin actions, and the server refuses them anyway.
    await Promise.all([page.waitForNavigation(), page.click('header form button')]);
    await signIn(page, scenario.auditor_token_file);
    check((await text(page, '#role')) === 'auditor', 'signed in as auditor');
    await page.goto(base + scenario.cycle_path);
    check((await page.$('#indicator-form')) === null, 'an auditor is offered no indicator form');
    await page.goto(base + '/roller/' + encodeURIComponent(scenario.roller));
    check((await page.$('#unlock')) === null && (await page.$('#retire')) === null, 'an auditor is offered no actions');
    const refused = await page.evaluate(async (path) => {
      const csrf = document.querySelector('input[name=csrf]').value;
      const r = await fetch(path + '/retire', {method: 'POST', headers: {'Content-Type': 'application/x-www-form-urlencoded'},
                                               body: 'reason=auditor+tries&csrf=' + encodeURIComponent(csrf)});
      return {status: r.status, body: await r.text()};
    }, '/roller/' + encodeURIComponent(scenario.roller));
    check(refused.status === 403 && refused.body.includes('Only an admin'), 'the server refuses an auditor');
    const forged = await page.evaluate(async (path) => {
      const r = await fetch(path + '/retire', {method: 'POST', headers: {'Content-Type': 'application/x-www-form-urlencoded'},
                                               body: 'reason=forged+request'});
      return r.status;
    }, '/roller/' + encodeURIComponent(scenario.roller));
    check(forged === 403, 'a POST without the CSRF token is refused');
    await shot(page, '12-auditor');
    check(dialogs.length === 0, 'no dialog was opened by page content');
    console.log(JSON.stringify({ok: true, checks: done}));
  } catch (e) {
    console.log(JSON.stringify({ok: false, error: String(e && e.stack || e), checks: done, dialogs}));
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
})();
